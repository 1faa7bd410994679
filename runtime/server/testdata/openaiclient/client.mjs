// Talks to a running squeeze server with the official openai package, as an application
// would: a chat completion, the same one streamed, a completion, the model list and an
// error. Usage: BASE_URL=http://127.0.0.1:PORT MODEL=id node client.mjs
// Exits with status 1 and a message on the first check that fails.
import OpenAI from "openai";

const baseURL = process.env.BASE_URL;
const model = process.env.MODEL;
if (!baseURL || !model) {
  console.error("set BASE_URL and MODEL");
  process.exit(2);
}
const client = new OpenAI({ baseURL: baseURL + "/v1", apiKey: "unused", maxRetries: 0, timeout: 60000 });

function check(cond, what, value) {
  if (!cond) {
    throw new Error(`${what}: ${JSON.stringify(value)}`);
  }
}

const messages = [
  { role: "system", content: "Answer briefly." },
  { role: "user", content: "What does the turtle count?" },
];

// 1. Chat completion.
const chat = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 });
check(chat.object === "chat.completion" && chat.model === model, "chat object", chat);
check(chat.choices.length === 1, "chat choices", chat.choices);
const msg = chat.choices[0].message;
check(msg.role === "assistant" && typeof msg.content === "string", "chat message", msg);
check(["stop", "length"].includes(chat.choices[0].finish_reason), "chat finish_reason", chat.choices[0]);
check(chat.usage.prompt_tokens > 0 && chat.usage.completion_tokens > 0 &&
  chat.usage.total_tokens === chat.usage.prompt_tokens + chat.usage.completion_tokens, "chat usage", chat.usage);

// 2. The same chat completion, streamed: the deltas add up to the same greedy answer.
const stream = await client.chat.completions.create({
  model, messages, max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true },
});
let text = "";
let role = "";
let finish = null;
let usage = null;
let chunks = 0;
for await (const chunk of stream) {
  chunks++;
  check(chunk.object === "chat.completion.chunk", "chunk object", chunk);
  if (chunk.usage) {
    usage = chunk.usage;
  }
  for (const c of chunk.choices) {
    role ||= c.delta.role ?? "";
    text += c.delta.content ?? "";
    finish = c.finish_reason ?? finish;
  }
}
check(chunks >= 3 && role === "assistant", "stream chunks and role", { chunks, role });
check(text === msg.content, "streamed text equals the non-streamed one", { text, content: msg.content });
check(finish === chat.choices[0].finish_reason, "stream finish_reason", finish);
check(usage && usage.completion_tokens === chat.usage.completion_tokens, "stream usage", usage);

// 3. Completion.
const completion = await client.completions.create({ model, prompt: " the fox asks", max_tokens: 6, temperature: 0 });
check(completion.object === "text_completion" && completion.choices.length === 1, "completion", completion);
check(typeof completion.choices[0].text === "string" && completion.usage.completion_tokens > 0, "completion choice", completion);

// 4. Models.
const models = [];
for await (const m of client.models.list()) {
  models.push(m.id);
}
check(models.includes(model), "models list", models);

// 5. An error the client maps to its exception type.
try {
  await client.chat.completions.create({ model: "no-such-model", messages });
  check(false, "an unknown model was accepted", null);
} catch (err) {
  check(err instanceof OpenAI.NotFoundError && err.status === 404 && err.code === "model_not_found", "unknown model error",
    { status: err.status, code: err.code, message: err.message });
}

console.log(JSON.stringify({ ok: true, chat: msg.content, streamed_chunks: chunks, completion: completion.choices[0].text, models }));
