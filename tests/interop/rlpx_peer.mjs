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
import { emit, hex, listenOrDial, reportPeers } from './common.mjs'

const DEADLINE_MS = 30000 // the Python side kills us sooner; this only guards against leaks

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

const currentPeer = reportPeers(rlpx)
const quit = listenOrDial(rlpx)

const rl = createInterface({ input: process.stdin })
rl.on('line', (line) => {
  const cmd = line.trim()
  if (cmd === 'ping' && currentPeer() !== null) {
    currentPeer()._sendPing()
    emit({ event: 'ping_sent' })
  } else if (cmd === 'disconnect' && currentPeer() !== null) {
    currentPeer().disconnect()
    emit({ event: 'disconnect_sent' })
  } else if (cmd === 'quit') {
    quit()
  }
})
rl.on('close', quit)
setTimeout(quit, DEADLINE_MS).unref()
