// Drives Prelude's own web SDK (@prelude.so/js-sdk, the pinned test-only dependency in
// package.json) through a step-up with a verification token issued by our service, as a
// browser would run it (tests/js/test_sdk.py; contract 6).
//
// Reads one JSON object on stdin:
//   {domain, now, scope, metadata, challenge_token, verification_token, next_challenge_token}
// `challenge_token` is what Prelude's /stepup/request answers, `next_challenge_token` what its
// /stepup/continue answers; `now` (Unix seconds) is the browser's clock.
// Writes one JSON object on stdout: every request the SDK made, the challenge infos it
// reported, what requestStepUp and continueStepUp returned (or threw), and its step-up cache.
//
// Nothing leaves the process: fetch is stubbed (only the SDK's own inlined data: URL, its
// WebAssembly core, goes to the real fetch), and so are the browser APIs the SDK needs
// (window, localStorage, indexedDB, navigator.locks).

import { readFileSync } from "node:fs";

const input = JSON.parse(readFileSync(0, "utf8"));

// --- the browser around the SDK -------------------------------------------------------------

const realNow = Date.now.bind(Date);
const started = realNow();
Date.now = () => input.now * 1000 + (realNow() - started);

class MemoryStorage {
  // Items are own enumerable properties, as in a browser: the SDK lists its cache keys with
  // Object.keys(localStorage).
  getItem(key) {
    return Object.hasOwn(this, key) ? this[key] : null;
  }
  setItem(key, value) {
    this[key] = String(value);
  }
  removeItem(key) {
    delete this[key];
  }
}

// Just what the SDK's key store uses (open, objectStore get/put/delete), answered
// asynchronously as IndexedDB does.
function request(run) {
  const req = { result: undefined, error: null, onsuccess: null, onerror: null };
  setTimeout(() => {
    req.result = run();
    req.onsuccess?.();
  }, 0);
  return req;
}

const databases = new Map();
const indexedDB = {
  open(name) {
    const req = { result: undefined, transaction: null, onupgradeneeded: null };
    setTimeout(() => {
      const fresh = !databases.has(name);
      const stores = databases.get(name) ?? new Map();
      databases.set(name, stores);
      const db = {
        objectStoreNames: { contains: (store) => stores.has(store) },
        createObjectStore(store, { keyPath }) {
          stores.set(store, { keyPath, rows: new Map() });
        },
        deleteObjectStore: (store) => stores.delete(store),
        transaction: () => ({
          objectStore(store) {
            const { keyPath, rows } = stores.get(store);
            return {
              get: (key) => request(() => rows.get(key)),
              put: (value) => request(() => void rows.set(value[keyPath], value)),
              delete: (key) => request(() => void rows.delete(key)),
            };
          },
        }),
      };
      req.result = db;
      if (fresh) req.onupgradeneeded?.();
      req.onsuccess?.();
    }, 0);
    return req;
  },
};

Object.assign(globalThis, {
  window: globalThis,
  localStorage: new MemoryStorage(),
  indexedDB,
  isSecureContext: true,
  addEventListener: () => {},
  location: { hostname: "shop.example", href: "https://shop.example/" },
});
Object.defineProperty(globalThis, "navigator", {
  configurable: true,
  value: {
    userAgent: "Mozilla/5.0 (node test)",
    locks: { request: async (_name, _options, callback) => callback() },
  },
});

// --- Prelude's frontend API, stubbed ---------------------------------------------------------

const requests = [];
const realFetch = globalThis.fetch;
const base = `https://${input.domain}/v1/session`;

function unsignedJwt(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "EdDSA", typ: "JWT" })}.${part(claims)}.c2ln`;
}

const answers = {
  [`POST ${base}/stepup/request`]: () => ({ status: "review", challenge_token: input.challenge_token }),
  [`POST ${base}/stepup/continue`]: () => ({ challenge_token: input.next_challenge_token }),
  [`POST ${base}/refresh`]: () => ({
    access_token: unsignedJwt({ sub: "usr", scope: input.scope, exp: input.now + 900 }),
    expires_at: input.now + 900,
  }),
};

globalThis.fetch = async (url, init = {}) => {
  const href = String(url);
  if (href.startsWith("data:")) return realFetch(href, init); // the SDK's inlined wasm core
  const method = init.method ?? "GET";
  const headers = Object.fromEntries(Object.entries(init.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  requests.push({ method, url: href, headers, body: init.body === undefined ? null : JSON.parse(init.body) });
  const answer = answers[`${method} ${href}`];
  if (!answer) throw new Error(`unexpected request ${method} ${href}`);
  return new Response(JSON.stringify(answer()), {
    status: 200,
    headers: { "Content-Type": "application/json" },
  });
};

// --- the step-up, as the frontend of the company runs it --------------------------------------

const { PrldSessionClient } = await import("@prelude.so/js-sdk/session");

const challenges = [];
const onChallenge = (info) => challenges.push(info);
const client = new PrldSessionClient({ domain: input.domain });

async function outcome(run) {
  try {
    return { ok: await run() };
  } catch (error) {
    return { error: error.name, message: error.message };
  }
}

const requested = await outcome(() =>
  client.requestStepUp({ scope: input.scope, metadata: input.metadata, onChallenge }),
);
const cacheAfterRequest = Object.keys(localStorage).filter((key) => key.startsWith("prld.step-up."));
const continued = await outcome(() => client.continueStepUp(input.verification_token, onChallenge));
const cacheAfterContinue = Object.keys(localStorage).filter((key) => key.startsWith("prld.step-up."));

process.stdout.write(
  JSON.stringify({ requests, challenges, requested, continued, cacheAfterRequest, cacheAfterContinue }),
);
