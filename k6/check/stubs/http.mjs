// Stand-in for k6/http under node (check.mjs): records each request.
const http = {
  post(url, body, params) {
    globalThis.__calls.push({ op: 'http.post', url, headers: (params && params.headers) || {} });
    return { status: 200, json: () => 'sale-1' };
  },
};
export default http;
