// An @ethereumjs/devp2p node with a tiny sub-protocol, for the peer/server interop tests.
//
//   node peer_node.mjs listen                  -> {"event":"listening","port":P,"id":HEX}
//   node peer_node.mjs dial --port P --id HEX  -> dials 127.0.0.1:P expecting node id HEX
//
// Sub-protocol "probe" version 1, 2 message codes: every message received is reported, and a
// message with code 0 is answered with code 1 and the same payload.
// Stdout: one JSON object per line: "peer_added" (the Hello it received and the shared
// protocols with their offsets), "probe_message", "ping_received", "pong_received",
// "peer_removed" (reason code, and whether this side sent the Disconnect),
// "disconnect_received" (every Disconnect read, also one instead of Hello), "error".
// Stdin commands: "ping", "probe CODE HEX" (send a probe message), "disconnect REASON", "quit".
import { Peer, RLPx } from '@ethereumjs/devp2p'
import { secp256k1 } from 'ethereum-cryptography/secp256k1.js'
import { createInterface } from 'readline'
import * as snappy from 'snappyjs'
import { emit, hex, listenOrDial, reportPeers } from './common.mjs'

const DEADLINE_MS = 40000 // the Python side ends us sooner; this only guards against leaks

let probe = null

// ethereumjs reports no event for a Disconnect that comes instead of a Hello (the peer was
// never added): report every Disconnect it reads, with its reason, here.
const handleDisconnect = Peer.prototype._handleDisconnect
Peer.prototype._handleDisconnect = function (payload) {
  handleDisconnect.call(this, payload)
  emit({ event: 'disconnect_received', reason: this._disconnectReason, connected: this._connected })
}

// ethereumjs' Peer compresses only its own base messages; a sub-protocol compresses its
// payloads itself once both Hellos are at version 5 (as its ETH protocol does).
class Probe {
  constructor(version, peer, send) {
    this.version = version
    this.peer = peer
    this._rawSend = send
    probe = this
  }
  _send(code, payload) {
    const v5 = this.peer._hello !== null && this.peer._hello.protocolVersion >= 5
    this._rawSend(code, v5 ? snappy.compress(payload) : payload)
  }
  _handleMessage(code, payload) {
    emit({ event: 'probe_message', code, payload: hex(payload) })
    if (code === 0) this._send(1, payload)
  }
}

const rlpx = new RLPx(secp256k1.utils.randomPrivateKey(), {
  capabilities: [{ name: 'probe', version: 1, length: 2, constructor: Probe }],
  clientId: new TextEncoder().encode('ethereumjs-interop/peer'),
  maxPeers: 5,
  timeout: 20000,
  listenPort: null,
})

const currentPeer = reportPeers(rlpx, (peer) => ({
  protocols: peer._protocols.map((p) => ({ name: p.protocol.constructor.name, offset: p.offset, length: p.length })),
}))
const quit = listenOrDial(rlpx, 'dial_failed')

const rl = createInterface({ input: process.stdin })
rl.on('line', (line) => {
  const [cmd, a, b] = line.trim().split(/\s+/)
  if (cmd === 'ping' && currentPeer() !== null) {
    currentPeer()._sendPing()
    emit({ event: 'ping_sent' })
  } else if (cmd === 'probe' && probe !== null) {
    probe._send(Number(a), Uint8Array.from(Buffer.from(b ?? '', 'hex')))
    emit({ event: 'probe_sent' })
  } else if (cmd === 'disconnect' && currentPeer() !== null) {
    currentPeer().disconnect(Number(a ?? 0))
    emit({ event: 'disconnect_sent' })
  } else if (cmd === 'quit') {
    quit()
  }
})
rl.on('close', quit)
setTimeout(quit, DEADLINE_MS).unref()
