// A discovery v4 node of @ethereumjs/devp2p (its DPT) on 127.0.0.1, for the interop tests.
//
//   node discv4_dpt.mjs [--bootnode enode://PUBKEY@127.0.0.1:PORT] [--refresh MS]
//
// Prints JSON lines on stdout:
//   {"event":"listening","port":P,"pubkey":HEX}         once bound (pubkey = 64-byte x||y)
//   {"event":"peer_added","pubkey":HEX,"address":A,"udp_port":U}
//   {"event":"peer_removed","pubkey":HEX}
//   {"event":"table","pubkeys":[HEX,...]}                every 250 ms
// Exits when stdin closes (the test holds it open and kills the process at the end anyway).
import { DPT } from '@ethereumjs/devp2p'
import { secp256k1 } from 'ethereum-cryptography/secp256k1.js'
import { HOST, arg, emit, hex } from './common.mjs'

const key = secp256k1.utils.randomPrivateKey()
// The endpoint object is the one the DPT puts in its Pings' `from`; its ports are filled in
// once the socket is bound, so that peers can ping back.
const endpoint = { address: HOST, udpPort: null, tcpPort: null }
const dpt = new DPT(key, {
  endpoint,
  refreshInterval: Number(arg('refresh', '2000')),
  shouldFindNeighbours: true,
})
dpt.events.on('error', (err) => emit({ event: 'error', message: String(err && err.message) }))
dpt.events.on('peer:added', (peer) =>
  emit({ event: 'peer_added', pubkey: hex(peer.id), address: peer.address, udp_port: peer.udpPort }),
)
dpt.events.on('peer:removed', (peer) => emit({ event: 'peer_removed', pubkey: hex(peer.id) }))
dpt.events.once('listening', () => {
  const port = dpt._server._socket.address().port
  endpoint.udpPort = port
  endpoint.tcpPort = port
  emit({ event: 'listening', port, pubkey: hex(dpt.id) })
  const boot = arg('bootnode', null)
  if (boot) {
    const m = /^enode:\/\/([0-9a-f]{128})@([0-9.]+):(\d+)(?:\?discport=(\d+))?$/.exec(boot)
    if (!m) {
      emit({ event: 'error', message: `bad bootnode ${boot}` })
      process.exit(2)
    }
    const udpPort = Number(m[4] ?? m[3])
    dpt.bootstrap({ address: m[2], udpPort, tcpPort: Number(m[3]) }).catch((err) =>
      emit({ event: 'error', message: String(err && err.message) }),
    )
  }
  setInterval(() => emit({ event: 'table', pubkeys: dpt.getPeers().map((p) => hex(p.id)) }), 250)
})
dpt.bind(0, HOST)
process.stdin.on('end', () => process.exit(0))
process.stdin.resume()
