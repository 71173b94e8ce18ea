// Parse LogQL queries with Grafana's own LogQL grammar (@grafana/lezer-logql).
// stdin: JSON list of {"where": ..., "expr": ...}; prints one line per query that does not parse
// and exits 1 if any. Used by tests/test_stack_config.py when node and the module are present.
const { parser } = require("@grafana/lezer-logql");

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  let bad = 0;
  for (const q of JSON.parse(input)) {
    const errors = [];
    parser.parse(q.expr).iterate({
      enter: (node) => {
        if (node.type.isError) errors.push(node.from);
      },
    });
    if (errors.length) {
      bad++;
      console.log(`${q.where}: syntax error at offset ${errors[0]}: ${q.expr}`);
    }
  }
  process.exit(bad ? 1 : 0);
});
