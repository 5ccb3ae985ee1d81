// Stand-in for k6/net/grpc under node (check.mjs): records what each
// client does, and whether it was connected when it was closed.
class Client {
  constructor() {
    this.connected = false;
  }
  load() {}
  connect(addr, params) {
    this.connected = true;
    globalThis.__calls.push({ op: 'grpc.connect', addr, params: params || {} });
  }
  invoke(method, request, params) {
    globalThis.__calls.push({ op: 'grpc.invoke', method, metadata: (params && params.metadata) || {} });
    return { status: 0, message: { saleId: 'sale-1' } };
  }
  close() {
    globalThis.__calls.push({ op: 'grpc.close', connected: this.connected });
    this.connected = false;
  }
}
export default { Client, StatusOK: 0 };
