// Row (e) of the benchmark: hello's handler run by `node` on the host directly,
// from the same bundle fnrun sends to the VM. Usage: node direct.mjs BUNDLE.mjs EVENT_JSON
const [bundle, event] = process.argv.slice(2);
const module = await import(bundle);
const context = {
  awsRequestId: "direct",
  requestId: "direct",
  functionName: "hello",
  getRemainingTimeInMillis: () => 30_000,
};
const result = await module.handler(JSON.parse(event), context);
process.stdout.write(`${JSON.stringify(result)}\n`);
