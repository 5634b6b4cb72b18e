// What the Node.js peers of the interoperability tests and benchmarks share: the loopback
// host, JSON lines on stdout, and command-line flags.

export const HOST = '127.0.0.1'

// One JSON object per line; bigints (ethereumjs' chain values) as decimal strings.
export function emit(obj) {
  process.stdout.write(JSON.stringify(obj, (_, v) => (typeof v === 'bigint' ? v.toString() : v)) + '\n')
}

export const hex = (bytes) => Buffer.from(bytes).toString('hex')

// The value after `--name` on the command line, or `fallback`.
export function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`)
  return i < 0 ? fallback : process.argv[i + 1]
}

// For the RLPx peers: report each added peer (with its Hello, and `extra(peer)` fields),
// every Ping and Pong it receives, removals and errors. Returns a function giving the
// current peer (or null).
export function reportPeers(rlpx, extra = () => ({})) {
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
      ...extra(peer),
    })
  })
  rlpx.events.on('peer:removed', (peer, reason, disconnectWe) => {
    emit({ event: 'peer_removed', reason, disconnectWe: disconnectWe === true })
  })
  rlpx.events.on('peer:error', (peer, err) => emit({ event: 'peer_error', message: String(err) }))
  rlpx.events.on('error', (err) => emit({ event: 'error', message: String(err) }))
  return () => current
}

// For the RLPx peers: `listen` (reports the port) or `dial --port P --id HEX` as argv[2]
// says; a failed dial is reported as `dialFailedEvent`. Returns the function that quits.
export function listenOrDial(rlpx, dialFailedEvent = 'error') {
  const quit = () => {
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
      emit({ event: dialFailedEvent, message: String(err) }),
    )
  } else {
    emit({ event: 'error', message: `unknown mode ${mode}` })
    process.exit(2)
  }
  return quit
}
