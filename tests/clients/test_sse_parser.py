"""The Python client's text/event-stream parser, fed in arbitrary pieces."""

from stack_client.live import SseParser

STREAM = (
    'retry: 3000\r\n\r\n: heartbeat\n\nid: 7\nevent: task.created\ndata: {"a":\ndata: 1}\n\n'
    'event: ready\ndata: {"last_event_id": 7}\r\n\r\n'
)


def test_frames_survive_any_split_of_the_stream() -> None:
    for size in range(1, len(STREAM) + 1):
        parser = SseParser()
        frames = []
        for start in range(0, len(STREAM), size):
            frames += parser.feed(STREAM[start : start + size])
        assert frames == [
            ("task.created", '{"a":\n1}', "7"),
            ("ready", '{"last_event_id": 7}', None),
        ], size


def test_lines_end_only_at_cr_and_lf() -> None:
    data = '{"title": "a\u2028b\u2029c\x85d\x0ce\x1cf"}'
    assert SseParser().feed(f"id: 9\nevent: task.created\ndata: {data}\n\n") == [
        ("task.created", data, "9")
    ]
