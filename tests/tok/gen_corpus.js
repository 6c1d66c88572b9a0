// Generates tests/tok/corpus.jsonl, the committed conformance corpus of the tokenizer
// test: one JSON string per line, deterministic (seeded PRNG, no clock, no network), so
// the file only changes when this script does. Run: node tests/tok/gen_corpus.js > tests/tok/corpus.jsonl
//
// Kinds of text, each because it exercises a part of the Qwen2 pipeline: prose (the
// common path), code with indentation (whitespace pieces, punctuation runs), math and
// long numbers (one token per digit), JSON, CJK / Arabic / Cyrillic / other scripts
// (\p{L} pieces, multi-byte BPE), emoji and ZWJ sequences (4-byte UTF-8, symbols),
// decomposed combining marks (NFC), whitespace runs with \r\n and Unicode spaces
// (\s*[\r\n]+ and \s+(?!\S)), contractions in mixed case, added tokens in text, and
// random mixtures. Characters stay within Unicode 13 so that the C side's Unicode
// tables (PCRE2 10.42, utf8proc 2.6) and node's agree on every property used.
"use strict";

let seed = 0x5eed1234;
function rand() {
  // mulberry32
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (n) => Math.floor(rand() * n);
const pick = (a) => a[int(a.length)];
const range = (n, f) => Array.from({ length: n }, (_, i) => f(i));

const out = [];
const add = (s) => out.push(s);

// ---- English prose ----------------------------------------------------------------
const WORDS = (
  "the of and to in is was that for it with as his on be at by had are but from or have an they which " +
  "one you were her all she there would their we him been has when who will more no if out so said what up " +
  "its about into than them can only other new some could time these two may then do first any my now such " +
  "like our over man me even most made after also did many before must through back years where much your way " +
  "well down should because each just those people how too little state good very make world still own see men " +
  "work long get here between both life being under never day same another know while last might us great old " +
  "year off come since against go came right used take three derivative integral theorem prime capital France " +
  "Paris London river mountain photosynthesis electron gravity quantum algorithm compiler tokenizer patch " +
  "Bonsai weights binary gradient search probe answer question library function variable pointer memory"
).split(" ");
const PUNCT = [".", ",", ";", ":", "!", "?", "...", " -", " —", "'", '"'];
function sentence() {
  const n = 3 + int(14);
  let w = range(n, () => pick(WORDS));
  w[0] = w[0][0].toUpperCase() + w[0].slice(1);
  let s = "";
  for (let i = 0; i < n; i++) {
    s += (i ? " " : "") + w[i];
    if (i < n - 1 && rand() < 0.12) s += pick([",", ";", " (see above)", ":", " —"]);
  }
  return s + pick([".", ".", ".", "!", "?", "...", '."', ".)"]);
}
for (let i = 0; i < 260; i++) {
  const k = 1 + int(5);
  let p = range(k, sentence).join(rand() < 0.8 ? " " : "  ");
  if (rand() < 0.2) p = '"' + p + '" she said.';
  if (rand() < 0.15) p += "\n\n" + sentence();
  if (rand() < 0.1) p = p.toUpperCase();
  add(p);
}
add("The capital of France is");
add("The derivative of x^5 is 5x^4.");
add("Is 97 prime? Yes");
add("Hello, world! How are you today?");
add("Mr. O'Neill's dog-eared copy of \"War and Peace\" (1869) cost $12.50—a bargain.");
add("e.g., i.e., etc., vs. & co. #hashtag @mention https://example.com/path?q=1&r=2#frag");

// ---- contractions, mixed case ------------------------------------------------------
const CONTR = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Re", "'rE", "'VE", "'Ve",
  "'M", "'LL", "'Ll", "'lL", "'D", "’s", "’ll", "'x", "'", "''", "'''"];
const STEMS = ["DON", "don", "Don", "You", "YOU", "you", "it", "IT", "we", "They", "I", "she", "he", "can", "won",
  "John", "Mary", "x", "42", "", " ", "Ω", "日本", "rock'n", "l"];
for (let i = 0; i < 160; i++) {
  const n = 1 + int(4);
  add(range(n, () => pick(STEMS) + pick(CONTR) + (rand() < 0.5 ? pick(["", "t", " go", "s", "!", "\n"]) : "")).join(pick([" ", "", ", ", "\n"])));
}
add("DON'T");
add("You'Ll");
add("I'M SURE YOU'VE HEARD IT'S THEY'RE WE'D SHE'LL");
add("'s 'S 'ſ 'K 'K");

// ---- code ------------------------------------------------------------------------
const IDS = ["x", "y", "i", "j", "n", "count", "buf", "ptr", "len", "result", "value", "node", "items",
  "total_sum", "camelCase", "PascalCase", "SCREAMING_CASE", "_private", "__dunder__", "ä_var", "π"];
const id = () => pick(IDS);
const num = () => String(int(2) ? int(100) : int(100000));
function indent(lines, unit) {
  return lines.map(([d, l]) => unit.repeat(d) + l).join("\n");
}
const CODE = [
  () => indent([[0, `int ${id()}(const char *${id()}, size_t ${id()}) {`], [1, `for (size_t i = 0; i < ${num()}; i++) {`],
    [2, `if (${id()}[i] == '\\n' && ${id()} != NULL) return -${num()};`], [2, `${id()} += ${id()}[i] * 0x${int(65536).toString(16)};`],
    [1, "}"], [1, `return ${id()} >> ${int(32)};`], [0, "}"]], pick(["    ", "\t", "  "])),
  () => `#include <stdio.h>\n#define MAX(a, b) ((a) > (b) ? (a) : (b))\nstatic const char *${id()} = "%s: %d\\n";`,
  () => indent([[0, `def ${id()}(${id()}, ${id()}=None, *args, **kwargs):`], [1, `"""Return the ${pick(WORDS)} of ${id()}."""`],
    [1, `if ${id()} is None:`], [2, `${id()} = [x ** 2 for x in range(${num()}) if x % ${1 + int(9)} == 0]`],
    [1, `return {k: v for k, v in zip(${id()}, ${id()})}  # ${sentence()}`]], pick(["    ", "\t", "  "])),
  () => `class ${pick(["Foo", "Bar", "TokenizerTest"])}(object):\n    def __init__(self):\n        self.x = ${num()}\n        self.y = f"{self.x:>10}"\n\n\n`,
  () => indent([[0, `const ${id()} = async (${id()}) => {`], [1, `const { ${id()}, ${id()} } = await fetch(\`/api/${id()}?id=\${${id()}}\`);`],
    [1, `return ${id()}?.map((x) => x * ${num()}) ?? [];`], [0, "};"]], pick(["  ", "    ", "\t"])),
  () => `function ${id()}(a, b) { return a === b ? !!a : a !== null && b <= ${num()}; } // ${sentence()}`,
  () => indent([[0, `fn ${id()}<'a, T: Clone>(${id()}: &'a [T]) -> Option<&'a T> {`], [1, `let mut ${id()} = ${num()}_u64;`],
    [1, `match ${id()}.get(${int(10)}) {`], [2, "Some(v) => Some(v),"], [2, `None => { println!("{:?}", ${id()}); None }`], [1, "}"], [0, "}"]], "    "),
  () => `impl<T> Drop for Guard<T> { fn drop(&mut self) { unsafe { libc::free(self.0 as *mut _) } } }`,
  () => `SELECT ${id()}, COUNT(*) AS n FROM ${pick(["users", "orders", "t1"])} WHERE ${id()} >= ${num()} AND name LIKE '%${pick(WORDS)}%'\nGROUP BY 1 ORDER BY n DESC LIMIT ${int(100)};`,
  () => `INSERT INTO t (a, b) VALUES (${num()}, 'it''s'), (${num()}, NULL);\nUPDATE t SET b = b || '!' WHERE a <> ${num()};`,
  () => `#!/bin/sh\nset -eu\nfor f in *.txt; do\n  grep -q "${pick(WORDS)}" "$f" && echo "$f: $(wc -l < "$f")" >> out.log\ndone\n`,
  () => `ls -la | awk '{print $${1 + int(9)}}' | sort -u | head -n ${int(50)} 2>/dev/null || true`,
  () => `<div class="${id()}"><a href="/x?y=${num()}">${sentence()}</a></div>`,
  () => `    \t    ${id()} = ${num()};   \n\t\t\t${id()}++;\n\n\n    `,
  () => `if (x) {\r\n    y = ${num()};\r\n}\r\n`,
  () => `// TODO(${pick(["alice", "bob"])}): ${sentence()}\n/* ${sentence()} */\n`,
  () => `diff --git a/x.c b/x.c\n@@ -${int(100)},${int(9)} +${int(100)},${int(9)} @@\n-    old();\n+    new_${id()}();\n`,
];
for (let i = 0; i < 330; i++) add(pick(CODE)());

// ---- math and numbers -------------------------------------------------------------
const OPS = ["+", "-", "*", "/", "^", "=", "<", ">", "<=", "≥", "≠", "±", "×", "÷", "√", "∑", "∫", "∂", "π", "∞"];
for (let i = 0; i < 200; i++) {
  const n = 2 + int(6);
  let s = String(int(1000));
  for (let k = 0; k < n; k++) s += (rand() < 0.5 ? " " : "") + pick(OPS) + (rand() < 0.5 ? " " : "") + (rand() < 0.3 ? "x" : String(int(10 ** (1 + int(5)))));
  if (rand() < 0.3) s = `Compute ${s}. Answer: ${int(100000)}`;
  if (rand() < 0.2) s = `$\\frac{${int(100)}}{${int(100)}} + \\sqrt{${int(1000)}}$`;
  add(s);
}
for (let i = 0; i < 100; i++) {
  const d = range(1 + int(60), () => int(10)).join("");
  add(pick([d, `${d}.${int(1000)}`, `-${d}e-${int(30)}`, `${int(1000)},${String(int(1000)).padStart(3, "0")},${String(int(1000)).padStart(3, "0")}`,
    `+1 (${int(1000)}) ${int(1000)}-${int(10000)}`, `v${int(10)}.${int(20)}.${int(100)}`, `abc${d}def`, `0x${d}`, `${d}%`, `١٢٣٤٥ ${d}`, `２０２４年`]));
}
add("12345678901234567890123456789012345678901234567890");
add("3.141592653589793238462643383279502884197169399375105820974944");

// ---- JSON -------------------------------------------------------------------------
function randValue(depth) {
  const r = rand();
  if (depth > 2 || r < 0.3) return pick([int(1000), -int(100) / 8, true, false, null, pick(WORDS), sentence(), "日本語", "line\nbreak", "tab\tq\"uote"]);
  if (r < 0.6) return range(int(4), () => randValue(depth + 1));
  const o = {};
  for (let k = 0; k < 1 + int(4); k++) o[pick(IDS)] = randValue(depth + 1);
  return o;
}
for (let i = 0; i < 140; i++) add(JSON.stringify(randValue(0), null, pick([0, 2, 4, "\t"])));

// ---- scripts ----------------------------------------------------------------------
const SCRIPTS = [
  "我们今天去公园散步，天气非常好。", "人工智能正在改变世界。", "北京是中国的首都，上海是最大的城市。",
  "日本語のテキストを正しく分割できますか？", "ひらがなとカタカナとカンジ", "東京タワーは三百三十三メートルです。",
  "안녕하세요, 만나서 반갑습니다.", "한국어 형태소 분석은 어렵다", "مرحبا بالعالم، كيف حالك اليوم؟",
  "اللغة العربية جميلة جدا", "שלום עולם, מה שלומך?", "Привет, мир! Как дела?", "Съешь же ещё этих мягких французских булок.",
  "Україна, Беларусь, Србија", "Γειά σου Κόσμε, τι κάνεις;", "नमस्ते दुनिया, आप कैसे हैं?", "สวัสดีชาวโลก ภาษาไทย",
  "Xin chào thế giới, tiếng Việt có dấu", "Türkçe: İstanbul'da ığdır şöyle", "Polski: zażółć gęślą jaźń",
  "ქართული ენა", "Հայերեն լեզու", "বাংলা ভাষা", "தமிழ் மொழி", "ગુજરાતી", "ᚠᛇᚻ᛫ᛒᛦᚦ", "ⴰⵣⵓⵍ", "ꯃꯤꯇꯩ",
];
for (let i = 0; i < 220; i++) {
  const n = 1 + int(3);
  add(range(n, () => pick(SCRIPTS)).join(pick(["", " ", "\n", " - ", "。", ". "])) + (rand() < 0.3 ? " " + sentence() : ""));
}

// ---- emoji ------------------------------------------------------------------------
const EMOJI = ["😀", "🙂", "🎉", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🇯🇵🇺🇸", "❤️", "✔︎", "☕", "🧪", "🐍", "🦀", "🤖",
  "1️⃣", "#️⃣", "👋🏿", "🧑🏻‍🤝‍🧑🏼", "🫠", "©", "™", "→", "⇒", "∀x∃y", "♥♦♣♠", "★☆", "🀄", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝟙𝟚𝟛"];
for (let i = 0; i < 140; i++) {
  const n = 1 + int(6);
  add(range(n, () => pick(EMOJI) + (rand() < 0.4 ? pick(WORDS) : "")).join(pick(["", " ", "  ", "\n"])));
}

// ---- combining marks, decomposed (NFC changes these) ------------------------------
const ACCENTED = ["café", "naïve", "résumé", "Ångström", "Zürich", "señor", "Dvořák", "Việt Nam", "Ελληνικά",
  "한국어", "ḱṓṇ", "Å", "ǆ", "ﬁ", "Ω", "K", "e\u0301\u0301", "a\u0328\u0301", "\u0301leading", "q\u0307\u0323"];
for (let i = 0; i < 140; i++) {
  const w = pick(ACCENTED) + (rand() < 0.5 ? " " + pick(ACCENTED) : "");
  add(pick([w.normalize("NFD"), w.normalize("NFD").toUpperCase(), w, w.normalize("NFKD"), w.normalize("NFD") + " " + sentence()]));
}
add("e\u0301");
add("\u1100\u1161\u11A8");
add("\u0041\u030A \u212B \u00C5");
add("\u0915\u093C \u0958");

// ---- whitespace ---------------------------------------------------------------------
const WS = [" ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n", "\u00a0", "\u3000", "\u2009", "\u200b", "\ufeff", "\u0085",
  "\u2028", "\u000b", "\u000c", " \n ", "\t\n", "\n\t", "\u1680", "\u202f"];
for (let i = 0; i < 200; i++) {
  const n = 1 + int(8);
  let s = "";
  for (let k = 0; k < n; k++) s += range(1 + int(4), () => pick(WS)).join("") + (rand() < 0.6 ? pick([pick(WORDS), "x", "!", "1", "日", "(", ""]) : "");
  add(s);
}
add(" ");
add("\n");
add("\r\n");
add("\t\t\t");
add("   leading and trailing   ");
add("a\r\n\r\nb\r\n");
add("word \n\n\n  next");
add(" ".repeat(300));
add("\n".repeat(50) + "end");
add("x" + " \t".repeat(40) + "y");
// U+FEFF is whitespace to JavaScript's \s (and so to the reference), U+0085 is not:
// these split differently if either is classed the other way.
add("\n  \ufeff");
add("x  \ufeff\n");
add("\n\n  \ufeff!");
add("a \u0085 b\u0085\u0085  c");

// ---- added tokens in text ---------------------------------------------------------
const SPECIAL = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
  "<tool_response>", "</tool_response>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|vision_start|>",
  "<|image_pad|>", "<|file_sep|>", "<|repo_name|>", "<|box_start|>"];
const NEAR = ["<|im_start", "im_end|>", "<|im_end|", "<think", "</ think>", "<|unknown|>", "<|", "|>", "<tool_call >", "<<|im_end|>>"];
for (let i = 0; i < 160; i++) {
  const n = 1 + int(5);
  let s = "";
  for (let k = 0; k < n; k++) s += pick([pick(SPECIAL), pick(SPECIAL), pick(NEAR)]) + pick(["", "user\n", "assistant\n", sentence(), "\n", " ", "{\"name\": \"f\"}"]);
  add(s);
}
add("<|im_start|>user\nHello, 世界! 🙂<|im_end|>");
add("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
add("<|im_end|><|im_end|><|im_end|>");
add("text<|endoftext|>text");
// Text between added tokens is normalised on its own: '>' + U+0338 would compose to
// U+226F across the boundary.
add("<|im_end|>\u0338 x<think>\u0301</think>\u0338 a>\u0338b");

// ---- random mixtures ----------------------------------------------------------------
const BLOCKS = [[0x20, 0x7e], [0xa0, 0x24f], [0x300, 0x36f], [0x370, 0x3ff], [0x400, 0x4ff], [0x590, 0x5ff], [0x600, 0x6ff],
  [0x900, 0x97f], [0xe00, 0xe7f], [0x1100, 0x11ff], [0x2000, 0x206f], [0x20a0, 0x20bf], [0x2100, 0x214f], [0x2190, 0x21ff],
  [0x2200, 0x22ff], [0x2500, 0x257f], [0x3000, 0x303f], [0x3040, 0x30ff], [0x4e00, 0x9fa5], [0xac00, 0xd7a3], [0xff00, 0xffef],
  [0x1f300, 0x1f5ff], [0x1f600, 0x1f64f], [0x1d400, 0x1d7ff], [0x10000, 0x1007f]];
for (let i = 0; i < 300; i++) {
  const n = 1 + int(40);
  let s = "";
  for (let k = 0; k < n; k++) {
    const [a, b] = pick(BLOCKS);
    const cp = a + int(b - a + 1);
    s += String.fromCodePoint(cp);
  }
  add(s);
}
// every printable ASCII character alone and in pairs, and C0 controls but NUL
for (let c = 1; c < 128; c++) add(String.fromCharCode(c));
for (let i = 0; i < 60; i++) add(String.fromCharCode(32 + int(95)) + String.fromCharCode(32 + int(95)) + String.fromCharCode(1 + int(127)));

// ---- long strings -------------------------------------------------------------------
add(range(60, sentence).join(" "));
add(range(40, () => pick(CODE)()).join("\n\n"));
add("a".repeat(3000));
add("ab".repeat(1500));
add("9".repeat(500));
add("日本".repeat(500));
add("!".repeat(1000));
add("\t".repeat(200) + "x" + " ".repeat(200));

for (const s of out) {
  if (s.includes("\0")) throw new Error("NUL in corpus");
  process.stdout.write(JSON.stringify(s) + "\n");
}
process.stderr.write(`${out.length} strings\n`);
