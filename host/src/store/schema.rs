//! The schema, as the migrations that build it.

/// Schema migrations, applied in order; the database records how many ran
/// in `PRAGMA user_version`. Never edit one that has shipped: append.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    "CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        venue TEXT,
        data TEXT NOT NULL
    );
    CREATE TABLE feed_cursors (
        feed TEXT NOT NULL,
        symbol TEXT NOT NULL,
        last_bar_ms INTEGER NOT NULL,
        PRIMARY KEY (feed, symbol)
    );
    CREATE TABLE orders (
        client_order_id TEXT PRIMARY KEY,
        venue TEXT NOT NULL,
        strategy TEXT NOT NULL,
        intent INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
        qty TEXT NOT NULL,
        order_type TEXT NOT NULL,
        limit_price TEXT,
        time_in_force TEXT NOT NULL,
        status TEXT NOT NULL,
        venue_order_id TEXT,
        filled_qty TEXT NOT NULL DEFAULT '0',
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE INDEX orders_by_status ON orders (venue, status);
    CREATE TABLE fills (
        venue TEXT NOT NULL,
        fill_id TEXT NOT NULL,
        client_order_id TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
        qty TEXT NOT NULL,
        price TEXT NOT NULL,
        commission TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        PRIMARY KEY (venue, fill_id)
    );
    CREATE TABLE positions (
        venue TEXT NOT NULL,
        symbol TEXT NOT NULL,
        qty TEXT NOT NULL,
        avg_price TEXT NOT NULL,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY (venue, symbol)
    );",
    // 2: strategy state, so a restarted strategy resumes where it stopped.
    "CREATE TABLE strategy_states (
        instance TEXT PRIMARY KEY,
        state BLOB NOT NULL,
        last_bar_ms INTEGER NOT NULL,
        saved_ms INTEGER NOT NULL
    );",
    // 3: webhook deliveries already acted on, so a retried one never acts twice.
    "CREATE TABLE webhook_deliveries (
        route TEXT NOT NULL,
        key TEXT NOT NULL,
        received_ms INTEGER NOT NULL,
        PRIMARY KEY (route, key)
    );",
    // 4: the notification outbox, fed from the journal.
    "CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        sink TEXT NOT NULL,
        event_id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        data TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        due_ms INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        UNIQUE (sink, event_id)
    );
    CREATE INDEX outbox_due ON outbox (state, due_ms);
    CREATE TABLE notify_cursor (
        name TEXT PRIMARY KEY,
        last_event_id INTEGER NOT NULL
    );",
    // 5: the intent number a saved strategy counts its own from, saved with
    // its state and the orders it placed (orders may now be `queued`:
    // decided and persisted, not yet handed to the router).
    "ALTER TABLE strategy_states ADD COLUMN intent_base INTEGER;",
    // 6: whether the strategy that placed a fill's order has been told of
    // it; fills recorded before this are taken as told.
    "ALTER TABLE fills ADD COLUMN delivered INTEGER NOT NULL DEFAULT 1;",
    // 7: dedup keys expire (keys recorded before this keep a
    // day); accepted deliveries wait in an inbox, payload included, one row
    // per strategy, until handed over; sinks disabled by a 410 stay so
    // across restarts (for the URL, by hash, that answered it); and the
    // outbox is read per sink in order.
    "ALTER TABLE webhook_deliveries ADD COLUMN expires_ms INTEGER;
    UPDATE webhook_deliveries SET expires_ms = received_ms + 86400000;
    CREATE INDEX webhook_deliveries_expiry ON webhook_deliveries (expires_ms);
    CREATE TABLE webhook_inbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        route TEXT NOT NULL,
        key TEXT NOT NULL,
        strategy TEXT NOT NULL,
        received_ms INTEGER NOT NULL,
        inbound TEXT NOT NULL
    );
    CREATE TABLE disabled_sinks (
        sink TEXT PRIMARY KEY,
        url_sha256 TEXT NOT NULL,
        reason TEXT NOT NULL,
        disabled_ms INTEGER NOT NULL
    );
    CREATE INDEX outbox_by_sink ON outbox (sink, state, id);",
    // 8: each venue's trading state, so a halt survives a restart.
    "CREATE TABLE venue_states (
        venue TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        reason TEXT,
        since_ms INTEGER NOT NULL
    );",
    // 9: contract 0.2. A strategy picks its order ids; they are unique
    // within a lifetime of the instance, which is saved with its state.
    // External (webhook) orders are lifetime 0 instead of a high number.
    "ALTER TABLE orders ADD COLUMN lifetime INTEGER NOT NULL DEFAULT 1;
    UPDATE orders SET lifetime = 0, intent = intent - 4611686018427387904 WHERE intent >= 4611686018427387904;
    ALTER TABLE strategy_states ADD COLUMN lifetime INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE strategy_states DROP COLUMN intent_base;
    CREATE INDEX orders_by_strategy ON orders (strategy, lifetime, intent);",
    // 10: the stop price of a stop or stop-limit order (a
    // stop-limit's limit is in `limit_price`, as a limit order's is).
    "ALTER TABLE orders ADD COLUMN stop_price TEXT;",
    // 11: a venue's own id for each symbol it was asked about (Interactive
    // Brokers' `conid`), so a restart does not search for it again.
    "CREATE TABLE venue_contracts (
        venue TEXT NOT NULL,
        symbol TEXT NOT NULL,
        contract TEXT NOT NULL,
        PRIMARY KEY (venue, symbol)
    );",
];
