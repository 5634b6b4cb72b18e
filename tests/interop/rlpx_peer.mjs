// An @ethereumjs/devp2p RLPx node for the RLPx interoperability tests.
//
//   node rlpx_peer.mjs listen                 -> {"event":"listening","port":P,"id":HEX}
//   node rlpx_peer.mjs dial --port P --id HEX -> dials 127.0.0.1:P expecting node id HEX
//
// Then, one JSON object per line on stdout: "peer_added" (with the Hello it received),
// "ping_sent", "ping_received", "pong_received", "peer_removed", "peer_error", "error".
// Commands on stdin, one per line: "ping" (send a Ping), "disconnect" (send Disconnect),
// "quit". The process exits on "quit", when stdin closes, or after DEADLINE_MS.
import { RLPx } from '@ethereumjs/devp2p'
import { secp256k1 } from 'ethereum-cryptography/secp256k1.js'
import { createInterface } from 'readline'

const HOST = '127.0.0.1'
const DEADLINE_MS = 30000 // the Python side kills us sooner; this only guards against leaks

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function hex(bytes) {
  return Buffer.from(bytes).toString('hex')
}

function arg(name) {
  const i = process.argv.indexOf(`--${name}`)
  return i < 0 ? undefined : process.argv[i + 1]
}

// A sub-protocol that does nothing: ethereumjs drops peers that share no capability.
class Probe {
  constructor(version, peer, send) {
    this.version = version
    this.peer = peer
    this._send = send
  }
  _handleMessage(code, payload) {
    emit({ event: 'probe_message', code, payload: hex(payload) })
  }
}

const key = secp256k1.utils.randomPrivateKey()
const rlpx = new RLPx(key, {
  capabilities: [{ name: 'probe', version: 1, length: 1, constructor: Probe }],
  clientId: new TextEncoder().encode('ethereumjs-interop/rlpx'),
  maxPeers: 5,
  timeout: 20000,
  listenPort: null,
})

let current = null

rlpx.events.on('peer:added', (peer) => {
  current = peer
  const hello = peer.getHelloMessage()
  const handlePing = peer._handlePing.bind(peer)
  peer._handlePing = () => {
    emit({ event: 'ping_received' })
    handlePing()
  }
  const handlePong = peer._handlePong.bind(peer)
  peer._handlePong = () => {
    emit({ event: 'pong_received' })
    handlePong()
  }
  emit({
    event: 'peer_added',
    id: hex(peer.getId()),
    hello: {
      protocolVersion: hello.protocolVersion,
      clientId: hello.clientId,
      capabilities: hello.capabilities,
      port: hello.port,
      id: hex(hello.id),
    },
  })
})
rlpx.events.on('peer:removed', (peer, reason, disconnectWe) => {
  emit({ event: 'peer_removed', reason, disconnectWe: disconnectWe === true })
})
rlpx.events.on('peer:error', (peer, err) => emit({ event: 'peer_error', message: String(err) }))
rlpx.events.on('error', (err) => emit({ event: 'error', message: String(err) }))

function quit() {
  try {
    rlpx.destroy()
  } catch (err) {
    // already destroyed
  }
  process.exit(0)
}

const mode = process.argv[2]
if (mode === 'listen') {
  rlpx.events.on('listening', () => {
    emit({ event: 'listening', port: rlpx._server.address().port, id: hex(rlpx.id) })
  })
  rlpx.listen(0, HOST)
} else if (mode === 'dial') {
  emit({ event: 'dialing', id: hex(rlpx.id) })
  const id = Uint8Array.from(Buffer.from(arg('id'), 'hex'))
  rlpx.connect({ id, address: HOST, tcpPort: Number(arg('port')) }).catch((err) =>
    emit({ event: 'error', message: String(err) }),
  )
} else {
  emit({ event: 'error', message: `unknown mode ${mode}` })
  process.exit(2)
}

const rl = createInterface({ input: process.stdin })
rl.on('line', (line) => {
  const cmd = line.trim()
  if (cmd === 'ping' && current !== null) {
    current._sendPing()
    emit({ event: 'ping_sent' })
  } else if (cmd === 'disconnect' && current !== null) {
    current.disconnect()
    emit({ event: 'disconnect_sent' })
  } else if (cmd === 'quit') {
    quit()
  }
})
rl.on('close', quit)
setTimeout(quit, DEADLINE_MS).unref()
