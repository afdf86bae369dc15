// Copies the compiled module into the server package, which serves it at /v1/client.js without needing node.
import { copyFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
for (const name of ["client.js", "client.d.ts"]) {
  copyFileSync(here(`../dist/${name}`), here(`../../../service/fleetcast/web/${name}`));
}
