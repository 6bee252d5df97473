// A TCP proxy in front of the KMS emulator, for the fault soak's KMS faults (bench/soak.js
// --kms aws). It forwards bytes both ways, and on command makes the KMS unreachable or slow the
// ways a network does:
//   pass    forward everything (the default);
//   refuse  every connection, open or new, is reset at once (a KMS endpoint that is down);
//   stall   every connection, open or new, stops moving bytes until the mode changes (a network
//           partition: the client's own timeouts have to end its calls);
//   reset   the open connections are reset once, mid-call, and new ones pass.
// Pooled keep-alive connections are why `refuse` and `stall` act on the open ones too: a client
// that reuses a connection would never see a listener that only refuses new ones.
const net = require('node:net')

/** Starts the proxy on a loopback port in front of `target` (`http://127.0.0.1:port`). */
async function startProxy(target) {
  const { hostname, port } = new URL(target)
  const pairs = new Set()
  let mode = 'pass'
  const server = net.createServer((client) => {
    if (mode === 'refuse') return client.resetAndDestroy()
    const upstream = net.connect(Number(port), hostname)
    const pair = { client, upstream }
    pairs.add(pair)
    const end = () => {
      pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on('error', end).on('close', end)
    upstream.on('error', end).on('close', end)
    client.pipe(upstream)
    upstream.pipe(client)
    if (mode === 'stall') hold(pair)
  })
  const hold = ({ client, upstream }) => {
    client.unpipe(upstream)
    upstream.unpipe(client)
    client.pause()
    upstream.pause()
  }
  const release = ({ client, upstream }) => {
    client.pipe(upstream)
    upstream.pipe(client)
  }
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    endpoint: `http://127.0.0.1:${server.address().port}`,
    set(next) {
      const was = mode
      mode = next === 'reset' ? 'pass' : next
      if (next === 'refuse' || next === 'reset') for (const p of [...pairs]) p.client.resetAndDestroy()
      else if (next === 'stall') for (const p of pairs) hold(p)
      else if (next === 'pass' && was === 'stall') for (const p of pairs) release(p)
    },
    close: () => {
      for (const p of [...pairs]) p.client.destroy()
      return new Promise((resolve) => server.close(resolve))
    },
  }
}

module.exports = { startProxy }
