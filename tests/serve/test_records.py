"""Request ids: unguessable, unique, drawn in bulk from the OS random source."""

from __future__ import annotations

import re
import threading

from taskfit.serve.records import RequestIds


def test_request_ids_are_128_bit_hex_and_unique_across_refills() -> None:
    ids = RequestIds(per_draw=8)
    drawn = [ids.next() for _ in range(1000)]  # 125 refills of the pool
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in drawn)
    assert len(set(drawn)) == len(drawn)


def test_request_ids_stay_unique_when_threads_draw_at_once() -> None:
    ids, out = RequestIds(per_draw=4), []
    lock = threading.Lock()

    def draw() -> None:
        mine = [ids.next() for _ in range(500)]
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=draw) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 4000 and len(set(out)) == 4000


def test_two_services_do_not_share_ids() -> None:
    assert len({RequestIds().next() for _ in range(50)}) == 50  # a fresh pool each: no fixed seed
