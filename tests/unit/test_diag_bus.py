"""The diag bus check: a bus whose slaves answer other requests is not a
healthy bus, however few of those answers there are (two meters on one
address, or a lying slave; see poll/answer.py)."""
from gateway.field.diag import bus_item
from gateway.field.tool_views import check_text


def stats(**kw) -> dict:
    s = {"connected": True, "requests": 10000, "timeouts": 3, "crc_errors": 2, "mismatch": 0, "exceptions": 0,
         "response_ms_mean": 38.2, "response_ms_p95": 61.0}
    s.update(kw)
    return s


def test_a_clean_bus_passes():
    assert bus_item("rs485-1", stats())["level"] == "pass"


def test_one_answer_to_another_request_is_a_warning():
    c = bus_item("rs485-1", stats(mismatch=1))
    assert c["level"] == "warn"
    assert "1 answers not to the request" in check_text(c, "en")
    assert "应答与请求不符 1" in check_text(c, "zh")


def test_statistics_without_the_counter_still_read():
    s = stats()
    del s["mismatch"]          # a daemon of an older version answering over the socket
    c = bus_item("rs485-1", s)
    assert c["level"] == "pass" and "0 answers not to the request" in check_text(c, "en")
