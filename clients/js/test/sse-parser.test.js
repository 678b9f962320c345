// The text/event-stream parser, fed the way a network delivers: in arbitrary pieces.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SseParser } from "../index.js";

const STREAM = "retry: 3000\r\n\r\n: heartbeat\n\nid: 7\nevent: task.created\ndata: {\"a\":\ndata: 1}\n\n"
  + "event: ready\ndata: {\"last_event_id\": 7}\r\r\n";

test("frames survive any split of the stream, with CRLF, CR and LF line ends", () => {
  for (let size = 1; size <= STREAM.length; size += 1) {
    const frames = [];
    const parser = new SseParser((frame) => frames.push(frame));
    for (let i = 0; i < STREAM.length; i += size) parser.push(STREAM.slice(i, i + size));
    assert.deepEqual(frames, [
      { event: "task.created", data: '{"a":\n1}', id: "7" },
      { event: "ready", data: '{"last_event_id": 7}', id: null },
    ], `pieces of ${size}`);
  }
});
