// An @ethereumjs/devp2p ETH/68 peer configured for mainnet, for the eth interop test.
//
//   node eth_peer.mjs --port P --id HEX [--genesis HEX] [--request]
//
// Dials 127.0.0.1:P (node ID HEX, 64-byte public key), sends Status for mainnet (its own
// Common's network ID and fork ID; the genesis hash from --genesis, mainnet's by default),
// and prints one JSON object per line:
//   {"event":"status", "network":N, "genesis":HEX, "head":HEX, "fork_hash":HEX, "fork_next":N}
//   {"event":"headers", "request_id":N, "numbers":[...], "hashes":[...]}   (with --request)
//   {"event":"error", "message":...}
//   {"event":"removed", "reason":N, "we":BOOL}
// It exits after removal, or after the deadline.
import { Common, Mainnet } from '@ethereumjs/common'
import { ETH, RLPx } from '@ethereumjs/devp2p'
import { RLP } from '@ethereumjs/rlp'
import { bytesToHex, bytesToBigInt, bytesToInt, hexToBytes, intToBytes } from '@ethereumjs/util'
import { secp256k1 } from 'ethereum-cryptography/secp256k1.js'
import { keccak256 } from 'ethereum-cryptography/keccak.js'
import { HOST, arg, emit } from './common.mjs'

const DEADLINE_MS = 20000
const MAINNET_GENESIS = 'd4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3'

const port = Number(arg('port'))
const id = hexToBytes(`0x${arg('id')}`)
const genesis = hexToBytes(`0x${arg('genesis', MAINNET_GENESIS)}`)
const request = process.argv.includes('--request')

const common = new Common({ chain: Mainnet })
const rlpx = new RLPx(secp256k1.utils.randomPrivateKey(), {
  capabilities: [ETH.eth68],
  common,
  maxPeers: 5,
  timeout: 10000,
})
setTimeout(() => { emit({ event: 'deadline' }); process.exit(2) }, DEADLINE_MS)

rlpx.events.on('peer:added', (peer) => {
  const eth = peer.getProtocols().find((p) => p instanceof ETH)
  if (!eth) { emit({ event: 'error', message: 'no shared eth capability' }); return }
  eth.events.on('status', (status) => {
    emit({
      event: 'status',
      network: bytesToBigInt(status.chainId),
      genesis: bytesToHex(status.genesisHash).slice(2),
      head: bytesToHex(status.bestHash).slice(2),
      fork_hash: bytesToHex(status.forkId[0]).slice(2),
      fork_next: status.forkId[1].length === 0 ? 0 : bytesToBigInt(status.forkId[1]),
    })
    if (request) {
      // eth/66+: [request-id, [origin, amount, skip, reverse]]: blocks 0..4 from genesis.
      eth.sendMessage(3, [intToBytes(7), [new Uint8Array(), intToBytes(5), new Uint8Array(), new Uint8Array()]])
    }
  })
  eth.events.on('message', (code, payload) => {
    if (code === 4) {
      const [reqId, headers] = payload
      emit({
        event: 'headers',
        request_id: bytesToInt(reqId),
        numbers: headers.map((h) => (h[8].length === 0 ? 0 : bytesToInt(h[8]))),
        hashes: headers.map((h) => bytesToHex(keccak256(RLP.encode(h))).slice(2)),
        parents: headers.map((h) => bytesToHex(h[0]).slice(2)),
      })
    }
  })
  eth.sendStatus({ td: intToBytes(1), bestHash: genesis, genesisHash: genesis })
})
rlpx.events.on('peer:error', (_peer, err) => emit({ event: 'error', message: String(err && err.message ? err.message : err) }))
rlpx.events.on('peer:removed', (_peer, reason, we) => {
  emit({ event: 'removed', reason, we: Boolean(we) })
  rlpx.destroy()
  setTimeout(() => process.exit(0), 50)
})
rlpx.connect({ id, address: HOST, tcpPort: port }).catch((err) => {
  emit({ event: 'error', message: `connect: ${err}` })
  process.exit(1)
})
