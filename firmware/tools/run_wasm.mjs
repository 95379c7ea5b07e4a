// Run a Python script under the real MicroPython interpreter (WebAssembly port)
// with the firmware package installed as /lib/miu, as on the board.
//
//   node firmware/tools/run_wasm.mjs <script.py> [--lib <dir with miu/>] [--heap <bytes>]
//                                    [--put <host file>=<path in the interpreter>]...
//
// stdout: the script's output. Exit status: 0 = ran to the end, 1 = a Python
// exception (its traceback on stderr), 2 = the port could not be loaded
// (run `npm ci` in firmware/).
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
let script = null;
let lib = join(here, "..");
let heap = 1024 * 1024;
const puts = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--lib") lib = args[++i];
  else if (args[i] === "--put") puts.push(args[++i].split("="));
  else if (args[i] === "--heap") heap = parseInt(args[++i], 10);
  else script = args[i];
}
if (!script) {
  console.error("usage: run_wasm.mjs <script.py> [--lib dir] [--heap bytes]");
  process.exit(2);
}

let loadMicroPython;
try {
  ({ loadMicroPython } = await import("@micropython/micropython-webassembly-pyscript"));
} catch (e) {
  console.error("cannot load @micropython/micropython-webassembly-pyscript (run `npm ci` in firmware/): " + e.message);
  process.exit(2);
}

const mp = await loadMicroPython({
  heapsize: heap,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});

function copyTree(src, dst) {
  mp.FS.mkdir(dst);
  for (const name of readdirSync(src)) {
    const p = join(src, name);
    if (statSync(p).isDirectory()) {
      if (name !== "__pycache__") copyTree(p, dst + "/" + name);
    } else if (name.endsWith(".py")) {
      mp.FS.writeFile(dst + "/" + name, readFileSync(p));
    }
  }
}
try { mp.FS.mkdir("/lib"); } catch (e) { /* exists */ }
copyTree(join(lib, "miu"), "/lib/miu");
for (const [src, dst] of puts) mp.FS.writeFile(dst, readFileSync(src));

try {
  mp.runPython(readFileSync(script, "utf8"));
} catch (e) {
  if (e.name === "PythonError") {
    if (e.type === "SystemExit") process.exit(0);
    process.stderr.write(e.message + "\n");
    process.exit(1);
  }
  throw e;
}
