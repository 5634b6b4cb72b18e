// RLPx workloads on @ethereumjs/devp2p, the baseline of `p2p bench compare`.
//
//   node bench_rlpx.mjs listen                      -> {"event":"listening","port":P,"id":HEX}
//   node bench_rlpx.mjs send --port P --id HEX --count N --size BYTES
//                                                   -> {"event":"throughput", ...}
//   node bench_rlpx.mjs handshakes --port P --id HEX --count N
//                                                   -> {"event":"handshakes", ...}
//
// Every address is 127.0.0.1. The sub-protocol "bench" (version 1, two codes) carries the load:
// code 0 is a data message, code 1 tells the other side "all N received". Payloads are
// snappy-compressed by the protocol itself, as ethereumjs sub-protocols do after a v5 Hello.
import { RLPx } from '@ethereumjs/devp2p'
import { randomBytes } from 'crypto'
import * as snappy from 'snappyjs'
import { secp256k1 } from 'ethereum-cryptography/secp256k1.js'
import { HOST, arg, emit } from './common.mjs'

// Writes are buffered by node's socket; above this many queued bytes the sender waits for
// 'drain' so that memory stays bounded and the figure is a sustained rate.
const HIGH_WATER = 1 << 20
const DEADLINE_MS = 120000

class Bench {
  constructor(version, peer, send) {
    this.version = version
    this.peer = peer
    this._send = send
    this.onData = null
    this.onDone = null
  }

  send(code, payload) {
    const v5 = this.peer._hello !== null && this.peer._hello.protocolVersion >= 5
    this._send(code, v5 ? snappy.compress(payload) : payload)
  }

  _handleMessage(code, payload) {
    if (code === 0 && this.onData) this.onData(payload)
    else if (code === 1 && this.onDone) this.onDone(payload)
  }
}

const CAPABILITIES = [{ name: 'bench', version: 1, length: 2, constructor: Bench }]

function newNode(maxPeers = 25) {
  const key = secp256k1.utils.randomPrivateKey()
  return new RLPx(key, { capabilities: CAPABILITIES, maxPeers, timeout: 20000 })
}

function hexToBytes(hex) {
  return Uint8Array.from(Buffer.from(hex, 'hex'))
}

function listen() {
  const node = newNode(1000)
  node.events.on('peer:error', () => {})
  node.events.on('peer:added', (peer) => {
    const proto = peer.getProtocols()[0]
    let count = 0
    let bytes = 0
    proto.onData = (payload) => {
      count += 1
      bytes += payload.length
    }
    // The sender announces the end with code 1; we answer with our own counts so that it
    // stops its clock only when every message has been received and decoded here.
    proto.onDone = () => {
      proto.send(1, Buffer.from(JSON.stringify({ count, bytes })))
      count = 0
      bytes = 0
    }
  })
  node.events.once('listening', () => {
    emit({ event: 'listening', port: node._server.address().port, id: Buffer.from(node.id).toString('hex') })
  })
  node.listen(0, HOST)
  // The parent holds our stdin open; when it goes away, so do we.
  process.stdin.on('end', () => process.exit(0))
  process.stdin.resume()
}

function dial(node, port, id) {
  return new Promise((resolve, reject) => {
    const onAdded = (peer) => {
      node.events.off('peer:added', onAdded)
      resolve(peer)
    }
    node.events.on('peer:added', onAdded)
    node.connect({ id: hexToBytes(id), address: HOST, tcpPort: port }).catch(reject)
  })
}

async function send() {
  const port = Number(arg('port'))
  const id = arg('id')
  const count = Number(arg('count', '1000'))
  const size = Number(arg('size', '65536'))
  const node = newNode()
  node.events.on('peer:error', () => {})
  const peer = await dial(node, port, id)
  const proto = peer.getProtocols()[0]
  const socket = peer._socket
  const payload = randomBytes(size)
  async function burst(n) {
    const done = new Promise((resolve) => {
      proto.onDone = (answer) => resolve(JSON.parse(Buffer.from(answer).toString()))
    })
    for (let i = 0; i < n; i++) {
      proto.send(0, payload)
      if (socket.writableLength > HIGH_WATER) {
        await new Promise((resolve) => socket.once('drain', resolve))
      }
    }
    proto.send(1, Buffer.from('end'))
    return done
  }
  // An untimed tenth first, so that the figure is not the JIT compiler warming up.
  await burst(Math.max(10, Math.floor(count / 10)))
  const t0 = process.hrtime.bigint()
  const answer = await burst(count)
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  emit({
    event: 'throughput',
    size,
    count,
    received: answer.count,
    received_bytes: answer.bytes,
    seconds,
    msgs_per_s: answer.count / seconds,
    mb_per_s: answer.bytes / seconds / 1e6,
  })
  socket.destroy()
  node.destroy()
}

async function handshakes() {
  const port = Number(arg('port'))
  const id = arg('id')
  const count = Number(arg('count', '50'))
  const node = newNode()
  node.events.on('peer:error', () => {})
  async function once() {
    const peer = await dial(node, port, id)
    const socket = peer._socket
    // Peer.disconnect() only ends the socket 2 s later; closing it at once measures the
    // handshake rather than that timer.
    await new Promise((resolve) => {
      socket.once('close', resolve)
      socket.destroy()
    })
    // The RLPx object forgets the peer on the socket's 'close'; wait one turn for it.
    await new Promise((resolve) => setImmediate(resolve))
  }
  for (let i = 0; i < Math.max(2, Math.floor(count / 10)); i++) await once()  // warm-up, untimed
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < count; i++) await once()
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  emit({ event: 'handshakes', count, seconds, per_s: count / seconds })
  node.destroy()
}

const role = process.argv[2]
setTimeout(() => {
  emit({ event: 'error', error: 'deadline' })
  process.exit(3)
}, role === 'listen' ? 24 * 3600 * 1000 : DEADLINE_MS).unref()

if (role === 'listen') listen()
else if (role === 'send') await send()
else if (role === 'handshakes') await handshakes()
else {
  process.stderr.write('usage: bench_rlpx.mjs listen | send ... | handshakes ...\n')
  process.exit(2)
}
if (role !== 'listen') process.exit(0)
