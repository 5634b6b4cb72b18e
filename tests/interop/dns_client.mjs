// @ethereumjs/devp2p's DNS discovery client (its DNS class), asked to read one EIP-1459 tree
// from a given DNS server, for the interop tests.
//
//   node dns_client.mjs --server 127.0.0.1:PORT --url enrtree://KEY@DOMAIN --expect N [--rounds R]
//
// getPeers() takes random descents and stops early, so it is called up to R times (bounded)
// until N distinct peers are found. Prints one JSON line and exits:
//   {"event":"peers","peers":[{"address":A,"tcpPort":T,"udpPort":U},...],"rounds":K}
//   {"event":"error","message":M}
import { DNS } from '@ethereumjs/devp2p'
import { arg, emit } from './common.mjs'

const dns = new DNS({ dnsServerAddress: arg('server') })
const url = arg('url')
const expect = Number(arg('expect', '1'))
const rounds = Number(arg('rounds', '40'))
const found = new Map()
let round = 0
try {
  while (found.size < expect && round < rounds) {
    round++
    for (const peer of await dns.getPeers(expect, [url])) {
      found.set(`${peer.address}:${peer.tcpPort}:${peer.udpPort}`, peer)
    }
  }
  emit({ event: 'peers', peers: [...found.values()], rounds: round })
} catch (err) {
  emit({ event: 'error', message: String(err && err.message) })
}
process.exit(0)
