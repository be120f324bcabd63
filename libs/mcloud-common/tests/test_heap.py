import gc

from mcloud_common.heap import freeze_long_lived


def test_frozen_objects_are_left_out_of_full_collections() -> None:
    kept = [[n] for n in range(10_000)]  # long-lived containers, tracked by the collector
    try:
        frozen = freeze_long_lived(collect=True)
        assert frozen >= len(kept)
        in_generations = {id(o) for o in gc.get_objects()}
        assert gc.is_tracked(kept[0]) and id(kept[0]) not in in_generations  # collections skip it
    finally:
        gc.unfreeze()
