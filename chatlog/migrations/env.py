"""Alembic environment of the chat log: always run on a connection handed in by ``chatlog._migrate``.

``chatlog.upgrade()`` opens the transaction (with a lock, so two processes starting at once do not
both migrate) and passes its connection in ``config.attributes["connection"]``; the revisions then
run inside that one transaction.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("run the chat-log migrations through `ragloop db upgrade` (chatlog.upgrade)")

context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
