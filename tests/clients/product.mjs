// A product written in JavaScript runs Flywheel's loop over HTTP with Node's own fetch: what to
// serve this user (champion), the prompt filled in (render), passages (retrieve), then feedback
// on the answer, sending back the arm, versions and the retrieved chunk ids as context_ids.
// Environment: FLYWHEEL_URL, FLYWHEEL_READ_KEY, FLYWHEEL_INGEST_KEY, FLYWHEEL_USER,
// FLYWHEEL_QUERY, FLYWHEEL_VARIABLES (a JSON object). Prints one JSON object: every answer.
const env = process.env;
const base = env.FLYWHEEL_URL.replace(/\/$/, "");

async function call(method, path, key, body) {
  const response = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${key}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const answer = await response.json();
  if (!response.ok) {
    throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(answer)}`);
  }
  return answer;
}

const user = env.FLYWHEEL_USER;
const champion = await call("GET", `/v1/champion?user_id=${encodeURIComponent(user)}`, env.FLYWHEEL_READ_KEY);
const render = await call("POST", "/v1/render", env.FLYWHEEL_READ_KEY,
  { user_id: user, variables: JSON.parse(env.FLYWHEEL_VARIABLES) });
const retrieve = await call("POST", "/v1/retrieve", env.FLYWHEEL_READ_KEY,
  { user_id: user, query: env.FLYWHEEL_QUERY, k: 2 });
const feedback = await call("POST", "/v1/feedback", env.FLYWHEEL_INGEST_KEY, {
  event_id: `node-${user}-1`,
  ts: new Date().toISOString(),
  signal: "thumbs_down",
  reason: "outdated",
  query: env.FLYWHEEL_QUERY,
  output: retrieve.chunks[0].text,
  user_id: user,
  consent: true,
  arm: champion.arm,
  prompt_version: render.prompt.version,
  index_version: retrieve.index_version,
  model: champion.model,
  context_ids: retrieve.chunks.map((chunk) => chunk.id),
});
console.log(JSON.stringify({ runtime: `node ${process.version}`, champion, render, retrieve, feedback }));
