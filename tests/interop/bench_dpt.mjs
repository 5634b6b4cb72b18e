// discv4 ping round trips on @ethereumjs/devp2p, the baseline of `p2p bench compare`.
//
//   node bench_dpt.mjs answer                   -> {"event":"listening","port":P,"id":HEX}
//       a DPT node on 127.0.0.1 that answers pings (its own ping handler, nothing added)
//   node bench_dpt.mjs ping --port P --seconds S [--window W]
//                                               -> {"event":"pings", ...}
//       pings the node at 127.0.0.1:P with the library's own packet encoder, keeping W pings
//       in flight, and counts the Pongs whose reply token matches one of its pings.
//
// The Pings carry an empty UDP port in `from`, so the answering DPT does not ping back or try
// to add the pinger to its table: the figure is the cost of answering alone.
import { DPT, encode, decode } from '@ethereumjs/devp2p'
import * as dgram from 'dgram'
import { secp256k1 } from 'ethereum-cryptography/secp256k1.js'
import { HOST, arg, emit } from './common.mjs'

// A ping unanswered for this long is counted lost and replaced, so one dropped datagram does
// not shrink the window for good.
const LOST_MS = 1000

function answer() {
  const key = secp256k1.utils.randomPrivateKey()
  const dpt = new DPT(key, {
    endpoint: { address: HOST, udpPort: null, tcpPort: null },
    shouldFindNeighbours: false,
    refreshInterval: 3600000,
  })
  dpt.events.on('error', () => {})
  dpt.events.once('listening', () => {
    const port = dpt._server._socket.address().port
    emit({ event: 'listening', port, id: Buffer.from(dpt.id).toString('hex') })
  })
  dpt.bind(0, HOST)
  process.stdin.on('end', () => process.exit(0))
  process.stdin.resume()
}

async function ping() {
  const port = Number(arg('port'))
  const seconds = Number(arg('seconds', '2'))
  const window = Number(arg('window', '16'))
  const key = secp256k1.utils.randomPrivateKey()
  const socket = dgram.createSocket('udp4')
  await new Promise((resolve) => socket.bind(0, HOST, resolve))
  const outstanding = new Map()
  let answered = 0
  let lost = 0
  let sent = 0
  let stopping = false

  function sendOne() {
    const msg = encode(
      'ping',
      {
        version: 4,
        from: { address: HOST, udpPort: null, tcpPort: null },
        to: { address: HOST, udpPort: port, tcpPort: null },
      },
      key,
    )
    const hash = Buffer.from(msg.subarray(0, 32)).toString('hex')
    outstanding.set(hash, Date.now())
    sent += 1
    socket.send(msg, port, HOST)
  }

  socket.on('message', (msg) => {
    let info
    try {
      info = decode(Uint8Array.from(msg))
    } catch {
      return
    }
    if (info.typename !== 'pong') return
    const hash = Buffer.from(info.data.hash).toString('hex')
    if (!outstanding.delete(hash)) return
    answered += 1
    if (!stopping) sendOne()
  })

  const sweeper = setInterval(() => {
    const now = Date.now()
    for (const [hash, t] of outstanding) {
      if (now - t > LOST_MS) {
        outstanding.delete(hash)
        lost += 1
        if (!stopping) sendOne()
      }
    }
  }, 100)

  const t0 = process.hrtime.bigint()
  for (let i = 0; i < window; i++) sendOne()
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
  stopping = true
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9
  const counted = answered
  clearInterval(sweeper)
  socket.close()
  emit({ event: 'pings', window, seconds: elapsed, sent, answered: counted, lost, per_s: counted / elapsed })
}

const role = process.argv[2]
if (role === 'answer') answer()
else if (role === 'ping') {
  await ping()
  process.exit(0)
} else {
  process.stderr.write('usage: bench_dpt.mjs answer | ping --port P [--seconds S] [--window W]\n')
  process.exit(2)
}
