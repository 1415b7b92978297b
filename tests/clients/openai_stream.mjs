// The openai Node SDK as a real client of the proxy.
//
//   node openai_stream.mjs chat|responses
//
// Reads OPENAI_BASE_URL (the proxy's .../v1), OPENAI_API_KEY and MODEL from
// the environment, streams one completion and prints the concatenated text
// on stdout (then a newline). Any error exits non-zero with its message.
// With INCLUDE_USAGE=1 a chat stream asks for its usage; with REPORT_USAGE=1
// a second line gives, as JSON, how many chat chunks had no choices and the
// last usage seen (null when none).
import OpenAI from 'openai';

const mode = process.argv[2] ?? 'chat';
const client = new OpenAI({
  baseURL: process.env.OPENAI_BASE_URL,
  apiKey: process.env.OPENAI_API_KEY ?? 'unused',
  maxRetries: 0,
  timeout: 60_000,
});
const model = process.env.MODEL ?? 'gpt-4.1';
const prompt = 'Say hello';

let text = '';
let usageChunks = 0;
let usage = null;
if (mode === 'chat') {
  const stream = await client.chat.completions.create({
    model,
    messages: [{ role: 'user', content: prompt }],
    stream: true,
    ...(process.env.INCLUDE_USAGE === '1' ? { stream_options: { include_usage: true } } : {}),
  });
  for await (const chunk of stream) {
    text += chunk.choices?.[0]?.delta?.content ?? '';
    if (chunk.choices?.length === 0) usageChunks += 1;
    if (chunk.usage) usage = chunk.usage;
  }
} else if (mode === 'responses') {
  const stream = await client.responses.create({ model, input: prompt, stream: true });
  let completed = false;
  for await (const event of stream) {
    if (event.type === 'response.output_text.delta') text += event.delta;
    if (event.type === 'response.completed') completed = true;
  }
  if (!completed) throw new Error('stream ended without response.completed');
} else {
  throw new Error(`unknown mode ${mode}`);
}
process.stdout.write(text + '\n');
if (process.env.REPORT_USAGE === '1') {
  process.stdout.write(JSON.stringify({ usage_chunks: usageChunks, usage }) + '\n');
}
