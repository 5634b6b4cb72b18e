// A discovery v5 node of @chainsafe/discv5 on 127.0.0.1, for the interop tests.
//
//   node discv5_peer.mjs [--key HEX] [--port P] [--bootnode enr:...] [--talk NAME]
//
// --key: its 32-byte secp256k1 private key (a restart with the same key is the same node);
// --port: the UDP port (0 picks one); --bootnode: an ENR added to its table before it starts;
// --talk: a TALKREQ protocol it answers with "echo:" + the request (it answers no TALKREQ
// by itself).
//
// Prints JSON lines on stdout:
//   {"event":"listening","port":P,"enr":"enr:...","node_id":HEX}
//   {"event":"talk_received","protocol":TEXT,"payload":HEX,"node_id":HEX}
//   {"event":"result","id":N,"ok":true,...} or {"event":"result","id":N,"ok":false,"error":TEXT}
// Reads JSON commands on stdin, one a line, each answered by one "result":
//   {"id":N,"cmd":"ping","enr":"enr:..."}                      -> enr_seq, ip, port
//   {"id":N,"cmd":"findnode","enr":"enr:...","distances":[D]} -> enrs
//   {"id":N,"cmd":"talkreq","enr":"enr:...","protocol":TEXT,"payload":HEX} -> response (HEX)
//   {"id":N,"cmd":"lookup","target":HEX}                      -> enrs (closest first)
//   {"id":N,"cmd":"add_enr","enr":"enr:..."}
//   {"id":N,"cmd":"table"}                                    -> enrs of its routing table
// Exits when stdin closes.
import { createInterface } from 'node:readline'
import { Discv5 } from '@chainsafe/discv5'
import { ENR, SignableENR } from '@chainsafe/enr'
import { generateKeyPair, privateKeyFromRaw } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { HOST, arg, emit, hex } from './common.mjs'

const keyHex = arg('key', null)
const privateKey = keyHex
  ? privateKeyFromRaw(Uint8Array.from(Buffer.from(keyHex, 'hex')))
  : await generateKeyPair('secp256k1')
const port = Number(arg('port', '0'))
const talkProtocol = arg('talk', null)

const enr = SignableENR.createFromPrivateKey(privateKey)
const bind = multiaddr(`/ip4/${HOST}/udp/${port}`)
const discv5 = Discv5.create({
  enr,
  privateKey,
  bindAddrs: { ip4: bind },
  // its own address votes would re-sign the record while a test runs
  config: { enrUpdate: false },
})
discv5.on('talkReqReceived', (nodeAddr, _enr, message) => {
  const protocol = Buffer.from(message.protocol).toString()
  emit({ event: 'talk_received', protocol, payload: hex(message.request), node_id: nodeAddr.nodeId })
  if (talkProtocol !== null && protocol === talkProtocol) {
    const answer = Buffer.concat([Buffer.from('echo:'), Buffer.from(message.request)])
    discv5.sendTalkResp(nodeAddr, message.id, answer).catch((err) => emit({ event: 'error', message: String(err) }))
  }
})

const boot = arg('bootnode', null)
if (boot) discv5.addEnr(boot)
await discv5.start()
const boundPort = discv5.sessionService.transport.ip4.socket.address().port
// the record must carry the bound address: peers drop sessions with a node whose record
// says it lives elsewhere
enr.ip = HOST
enr.udp = boundPort
emit({ event: 'listening', port: boundPort, enr: enr.encodeTxt(), node_id: enr.nodeId })

const txt = (records) => records.map((r) => r.encodeTxt())

async function run(cmd) {
  switch (cmd.cmd) {
    case 'ping': {
      const pong = await discv5.sendPing(ENR.decodeTxt(cmd.enr))
      const addr = pong.addr
      return { enr_seq: String(pong.enrSeq), ip: addr.ip.type === 4 ? ipText(addr.ip.octets) : null, port: addr.port }
    }
    case 'findnode':
      return { enrs: txt(await discv5.sendFindNode(ENR.decodeTxt(cmd.enr), cmd.distances)) }
    case 'talkreq': {
      const resp = await discv5.sendTalkReq(ENR.decodeTxt(cmd.enr), Buffer.from(cmd.payload, 'hex'), cmd.protocol)
      return { response: hex(resp) }
    }
    case 'lookup':
      return { enrs: txt(await discv5.findNode(cmd.target)) }
    case 'add_enr':
      discv5.addEnr(cmd.enr)
      return {}
    case 'table':
      return { enrs: txt(discv5.kadValues()) }
    default:
      throw new Error(`unknown command ${cmd.cmd}`)
  }
}

function ipText(octets) {
  return Array.from(octets).join('.')
}

const lines = createInterface({ input: process.stdin })
lines.on('line', (line) => {
  let cmd
  try {
    cmd = JSON.parse(line)
  } catch (err) {
    emit({ event: 'error', message: `bad command ${line}` })
    return
  }
  run(cmd).then(
    (out) => emit({ event: 'result', id: cmd.id, ok: true, ...out }),
    (err) => emit({ event: 'result', id: cmd.id, ok: false, error: String(err && (err.message || err)) }),
  )
})
lines.on('close', async () => {
  await discv5.stop().catch(() => {})
  process.exit(0)
})
