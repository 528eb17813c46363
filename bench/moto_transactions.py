"""Benchmark-only: make moto's TransactWriteItems cost O(actions) instead of O(actions x table size).

moto 5.2.5 (dynamodb/models/__init__.py, transact_write_items) backs up the whole table with copy.deepcopy
once per action, before applying any action, and restores that backup on cancellation. Every backup of a
transaction is identical, so the work is quadratic in the ledger size and a monitor benchmark through moto
would measure moto's copying, not the requests. This patch keeps the semantics: it snapshots only the items
the transaction touches, lets moto's own table backup be a no-op, and restores the snapshot if the
transaction is cancelled. Counts are still checked for exactness after the run, so a wrong rollback shows.
"""

from __future__ import annotations

import copy
import threading

_lock = threading.Lock()


def install() -> None:
    import moto.dynamodb.models as models

    original = models.DynamoDBBackend.transact_write_items
    if getattr(original, "_streamwatch_fast", False):
        return

    class _CopyWithoutTables:
        @staticmethod
        def deepcopy(obj, memo=None):
            return obj if isinstance(obj, models.Table) else copy.deepcopy(obj, memo)

        copy = staticmethod(copy.copy)

    def key_of(table, op):
        source = op.get("Key") or op.get("Item", {})
        h = models.DynamoType(source[table.hash_key_attr])
        r = models.DynamoType(source[table.range_key_attr]) if table.range_key_attr else None
        return h, r

    def transact_write_items(self, transact_items):
        with _lock:
            snapshot = []
            for item in transact_items:
                _, op = next(iter(item.items()))
                table = self.tables.get(op.get("TableName"))
                if table is None:
                    continue
                h, r = key_of(table, op)
                current = table.items.get(h, {}).get(r) if r is not None else table.items.get(h)
                snapshot.append((table, h, r, copy.deepcopy(current)))
            models.copy = _CopyWithoutTables
            try:
                return original(self, transact_items)
            except Exception:
                for table, h, r, before in reversed(snapshot):
                    if r is None:
                        if before is None:
                            table.items.pop(h, None)
                        else:
                            table.items[h] = before
                    elif before is None:
                        table.items.get(h, {}).pop(r, None)
                    else:
                        table.items[h][r] = before
                raise
            finally:
                models.copy = copy

    transact_write_items._streamwatch_fast = True
    models.DynamoDBBackend.transact_write_items = transact_write_items
