// Parses LogQL expressions with Grafana's own grammar (@grafana/lezer-logql).
// Usage: node logql.cjs NPM_PREFIX < exprs.json   (a JSON array of strings)
// Prints a JSON array: {expr, errors: [offsets], top, stream: [...], fields: [...]}
// where `stream` holds the label names of stream selectors and `fields` every
// other label name (label filters, by/without groupings).
'use strict';
const path = require('path');
const { createRequire } = require('module');

const prefix = process.argv[2];
if (!prefix) throw new Error('usage: node logql.cjs NPM_PREFIX < exprs.json');
const { parser } = createRequire(path.join(prefix, 'package.json'))('@grafana/lezer-logql');

function analyse(expr) {
  const tree = parser.parse(expr);
  const out = { expr, errors: [], top: null, stream: [], fields: [] };
  const cursor = tree.cursor();
  do {
    const name = cursor.type.name;
    if (cursor.type.isError) out.errors.push(cursor.from);
    if (name === 'Expr' && out.top === null && cursor.node.firstChild) out.top = cursor.node.firstChild.type.name;
    if (name === 'Identifier') {
      let inSelector = false;
      for (let n = cursor.node.parent; n; n = n.parent) inSelector = inSelector || n.type.name === 'Selector';
      (inSelector ? out.stream : out.fields).push(expr.slice(cursor.from, cursor.to));
    }
  } while (cursor.next());
  return out;
}

let input = '';
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
  process.stdout.write(JSON.stringify(JSON.parse(input).map(analyse)));
});
