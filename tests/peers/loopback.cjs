// A TEST HELPER, not part of foxxy-bridge: a Node preload that keeps a third-party
// server on loopback and tells the test which port it got.
//
//   PORT=0 node --require ./tests/peers/loopback.cjs …/server-everything/dist/index.js streamableHttp
//
// server-everything calls `app.listen(PORT)`, which binds every interface. This preload
// wraps `net.Server.prototype.listen` (http.Server inherits it) so that a listen on a
// TCP port without a host binds 127.0.0.1 instead, and, once the server is listening,
// prints `FOXXY_LISTENING <port>` on stderr. With `PORT=0` the kernel picks a free
// port and the test (tests/it/interop_http.rs) reads the real one from that line.
//
// Only the port forms are touched: listening on a path (Unix socket), a handle or a
// file descriptor, or with an explicit host, goes through unchanged.

"use strict";

const net = require("node:net");

const LOOPBACK = "127.0.0.1";
const originalListen = net.Server.prototype.listen;

// A port as `listen` accepts it: a number, or a string of digits ("0", "3001").
function isPort(value) {
  return (typeof value === "number" && Number.isInteger(value)) ||
    (typeof value === "string" && /^[0-9]+$/.test(value));
}

// The arguments with a loopback host added when they name a port but no host, or null
// when they are left alone.
function withLoopbackHost(args) {
  const [first, second] = args;
  if (first === undefined || first === null || typeof first === "function") {
    // listen([callback]): any free port, on every interface unless we say otherwise.
    return [0, LOOPBACK, ...args.slice(first === undefined || first === null ? 1 : 0)];
  }
  if (isPort(first)) {
    // listen(port[, host][, backlog][, callback]): a string second argument is the host.
    if (typeof second === "string") return null;
    return [first, LOOPBACK, ...args.slice(1)];
  }
  if (first !== null && typeof first === "object" && !(first instanceof net.Server) &&
      first.path === undefined && first.fd === undefined && first.handle === undefined &&
      first._handle === undefined && first.host === undefined) {
    // listen(options[, callback]) with a port (or none, which means "any port").
    return [{ ...first, host: LOOPBACK }, ...args.slice(1)];
  }
  return null;
}

net.Server.prototype.listen = function listen(...args) {
  const patched = withLoopbackHost(args);
  if (patched !== null) {
    this.once("listening", () => {
      const address = this.address();
      if (address !== null && typeof address === "object") {
        process.stderr.write(`FOXXY_LISTENING ${address.port}\n`);
      }
    });
    return originalListen.apply(this, patched);
  }
  return originalListen.apply(this, args);
};
