// Connects to nocrd with the official TypeScript MCP SDK and prints, as one
// JSON object, what the Go test checks: the negotiated protocol, the tool
// names and the results of a few calls.
//
//   node client.mjs <base-url> <streamable|sse> <namespace>
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";

const [base, kind, namespace] = process.argv.slice(2);
const transport = kind === "sse"
  ? new SSEClientTransport(new URL(base + "/sse"))
  : new StreamableHTTPClientTransport(new URL(base + "/mcp"));
const client = new Client({ name: "nocrd-ts-e2e", version: "1.0.0" });
await client.connect(transport);

const { tools } = await client.listTools();
const cur = await client.callTool({ name: "current_namespace", arguments: {} });
const created = await client.callTool({
  name: "create_pod",
  arguments: { name: "ts-pod", namespace, containers: [{ name: "c", image: "busybox" }] },
});
const pods = await client.callTool({ name: "list_pods", arguments: { namespace } });
const bad = await client.callTool({ name: "get_pod", arguments: { name: "Not_Valid" } });
const templates = await client.listResourceTemplates();

console.log(JSON.stringify({
  server: client.getServerVersion(),
  tools: tools.map((t) => t.name).sort(),
  current: cur.structuredContent,
  currentText: cur.content[0].text,
  created: created.structuredContent,
  pods: pods.structuredContent.pods.map((p) => p.name),
  badIsError: bad.isError === true,
  badText: bad.content[0].text,
  resourceTemplates: templates.resourceTemplates.map((r) => r.uriTemplate),
}));
await client.close();
