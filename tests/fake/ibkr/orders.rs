//! Orders and the portfolio: tickets and their questions, live orders,
//! order status, positions and the account summary.

use super::*;

/// Why a ticket is refused: malformed (400), or well formed but not
/// acceptable (the documented 200 reject object).
enum Refusal {
    Bad(String),
    Reject(String),
}

/// Reads an order ticket as the reference types its fields.
fn ticket(g: &Gateway, account: &str, body: &[u8]) -> Result<Order, Refusal> {
    let bad = Refusal::Bad;
    if account != IBKR_ACCOUNT {
        return Err(bad(format!("Account {account} is not valid")));
    }
    let request: Value = serde_json::from_slice(body).map_err(|_| bad("body is not JSON".into()))?;
    // The reference body is {"orders": [ticket]}. Several tickets are only for
    // brackets and OCA groups ("does not ... support ... unrelated orders in
    // bulk"), which are not modelled.
    let tickets = request.get("orders").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let [t] = tickets else { return Err(bad("orders must hold one order ticket".into())) };
    let text = |key: &str| match t.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(bad(format!("{key} must be a string"))),
    };
    let number = |key: &str| match t.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let text = n.to_string();
            let value = text.parse::<Decimal>().or_else(|_| Decimal::from_scientific(&text));
            value.map(Some).map_err(|_| bad(format!("{key} is out of range")))
        }
        Some(_) => Err(bad(format!("{key} must be a number"))),
    };
    let one_of = |key: &str, allowed: &[&str]| match text(key)? {
        Some(v) if allowed.contains(&v) => Ok(v.to_string()),
        _ => Err(bad(format!("{key} must be one of {}", allowed.join(", ")))),
    };
    if text("acctId")?.is_some_and(|a| a != account) {
        return Err(bad("acctId differs from the account in the path".into()));
    }
    if text("parentId")?.is_some() {
        return Err(bad("bracket orders are not modelled".into()));
    }
    // conid is an int in order tickets (secdef/search answers it as a string).
    // The documented alternative, conidex, is not modelled.
    let conid = t.get("conid").and_then(Value::as_i64).ok_or_else(|| bad("conid must be an integer".into()))?;
    // Of the documented types, the fake models LMT, MKT, STP and STOP_LIMIT.
    let kind = one_of("orderType", &["LMT", "MKT", "STP", "STOP_LIMIT"])?;
    let side = one_of("side", &["BUY", "SELL"])?;
    // PAX is "CRYPTO ONLY"; the fake's contracts are stocks.
    let tif = one_of("tif", &["DAY", "GTC", "IOC", "OPG", "OVT", "OND"])?;
    // "Only whole share values are supported."
    let qty = number("quantity")?.filter(|q| q.is_sign_positive() && !q.is_zero() && q.fract().is_zero());
    let qty = qty.ok_or_else(|| bad("quantity must be a whole number of shares above 0".into()))?;
    let (price, aux) = (number("price")?, number("auxPrice")?);
    if price.or(aux).is_some_and(|p| p <= Decimal::ZERO) {
        return Err(bad("prices must be above 0".into()));
    }
    if (price.is_none() && kind != "MKT") || (aux.is_none() && kind == "STOP_LIMIT") {
        return Err(bad(format!("{kind} needs price{}", if kind == "STOP_LIMIT" { " and auxPrice" } else { "" })));
    }
    if t.get("outsideRTH").is_some_and(|v| !v.is_boolean()) {
        return Err(bad("outsideRTH must be a bool".into()));
    }
    let coid = text("cOID")?.map(str::to_string);
    let Some((symbol, _)) = g.contracts.iter().find(|(_, c)| *c == conid) else {
        return Err(Refusal::Reject(format!("Contract {conid} is not valid")));
    };
    // cOID "must be unique for a 24h span"; the gateway's refusal is a reject object.
    if let Some(coid) = coid.as_ref().filter(|c| g.orders.iter().any(|o| o.coid.as_ref() == Some(c))) {
        return Err(Refusal::Reject(format!(
            "Order couldn't be submitted: Local order ID={coid} is already registered."
        )));
    }
    let (symbol, now, zero) = (symbol.clone(), now_ms(), Decimal::ZERO);
    let (filled, avg, placed_ms, updated_ms, status, session) = (zero, zero, now, now, "Submitted", 0);
    Ok(Order {
        id: 0,
        coid,
        conid,
        symbol,
        side,
        kind,
        qty,
        price,
        aux,
        tif,
        status,
        filled,
        avg,
        placed_ms,
        updated_ms,
        session,
    })
}

pub(super) fn place(g: &mut Gateway, account: &str, body: &[u8]) -> Reply {
    let fault = g.order_faults.pop_front();
    match fault {
        Some(OrderFault::Status { code, retry_after }) => return injected(code, retry_after).into(),
        Some(OrderFault::Refuse { status, message, .. } | OrderFault::RefuseNamed { status, message, .. }) => {
            return json(status, json!({"error": message})).into();
        }
        _ => {}
    }
    if let Some(refusal) = accounts_first(g.accounts_read, "/iserver/accounts") {
        return refusal.into();
    }
    let order = match ticket(g, account, body) {
        Ok(order) => order,
        Err(Refusal::Bad(message)) => return error(400, &message).into(),
        Err(Refusal::Reject(message)) => return reject(&message).into(),
    };
    match fault {
        Some(fault) => Reply::Accepted(accept(g, order), fault),
        None => {
            let questions = std::mem::take(&mut g.questions);
            ask(g, Pending { reply_id: String::new(), order, questions })
        }
    }
}

/// Takes the order: it rests as Submitted until a test fills it.
fn accept(g: &mut Gateway, mut order: Order) -> Value {
    (order.id, order.session) = (g.next_id, g.session);
    g.next_id += 1;
    g.orders.push(order);
    // The placement answer has order_id as a string; elsewhere it is a number.
    json!([{"order_id": (g.next_id - 1).to_string(), "order_status": "Submitted", "encrypt_message": "1"}])
}

/// Asks the order's next question and holds it, or takes it when none is left.
fn ask(g: &mut Gateway, mut pending: Pending) -> Reply {
    let Some((message_id, text)) = pending.questions.pop_front() else {
        return json(200, accept(g, pending.order)).into();
    };
    g.questions_asked += 1;
    pending.reply_id = format!("07a13a5a-4a48-44a5-bb25-{:012x}", g.questions_asked);
    let answer =
        json!([{"id": pending.reply_id, "message": [text], "isSuppressed": false, "messageIds": [message_id]}]);
    g.pending = Some(pending);
    json(200, answer).into()
}

pub(super) fn confirm(g: &mut Gateway, reply_id: &str, body: &[u8]) -> Reply {
    let confirmed =
        serde_json::from_slice::<Value>(body).ok().and_then(|v| v.get("confirmed").and_then(Value::as_bool));
    let Some(confirmed) = confirmed else { return error(400, "body must be {\"confirmed\": bool}").into() };
    g.replies.push((reply_id.to_string(), confirmed));
    // "attempts to confirm invalid replies will result in a timeout (503)".
    let Some(pending) = g.pending.take().filter(|p| p.reply_id == reply_id) else {
        return error(503, "Service Unavailable").into();
    };
    if !confirmed {
        // "false will decline the message and discard the order"; the docs show
        // no answer for it, so it is the documented reject object.
        return reject("The order was declined and discarded").into();
    }
    ask(g, pending)
}

pub(super) fn live_orders(g: &mut Gateway, q: &HashMap<String, String>) -> Response {
    // Filter values as "Order Status Values" lists them (`pre_submitted`),
    // matched without case or underscores so status names match too.
    let normal = |s: &str| s.to_ascii_lowercase().replace('_', "");
    let known = "inactive pendingsubmit presubmitted submitted filled pendingcancel precancelled cancelled warnstate sortbytime";
    let filters: Vec<String> = q.get("filters").map_or(Vec::new(), |f| f.split(',').map(normal).collect());
    if let Some(unknown) = filters.iter().find(|f| !known.split(' ').any(|k| k == f.as_str())) {
        return error(400, &format!("unknown filter {unknown}"));
    }
    let force = match q.get("force").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return error(400, "force must be true or false"),
    };
    // The first call of a session finds the gateway still loading: an empty
    // list, "snapshot": false. "force ... Submission will appear as a blank array."
    if force || !g.orders_primed {
        g.orders_primed = true;
        return json(200, json!({"orders": [], "snapshot": false}));
    }
    let wanted = |o: &&Order| filters.iter().all(|f| f == "sortbytime") || filters.contains(&normal(o.status));
    // "Orders currently working as well as those cancelled or filled within the same brokerage session",
    // working ones first.
    let mut orders: Vec<&Order> =
        g.orders.iter().filter(|o| o.working() || o.session == g.session).filter(wanted).collect();
    orders.sort_by_key(|o| !o.working());
    json(200, json!({"orders": orders.into_iter().map(live_order).collect::<Vec<_>>(), "snapshot": true}))
}

/// The order type as live orders name it, and as `origOrderType`/`order_type` do.
fn type_names(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "LMT" => ("Limit", "LIMIT"),
        "STP" => ("Stop", "STOP"),
        "STOP_LIMIT" => ("Stop Limit", "STOP_LIMIT"),
        _ => ("Market", "MARKET"),
    }
}

/// A quantity as the order status strings it: "5.0".
fn quantity(d: Decimal) -> String {
    let text = d.normalize().to_string();
    if text.contains('.') { text } else { format!("{text}.0") }
}

/// "Sold 5 Market, GTC", "Buy 10 AAPL Limit 187.5, Day", as in the docs.
fn description(o: &Order, with_symbol: bool) -> String {
    let done = o.filled == o.qty;
    let verb = match (o.side.as_str(), done) {
        ("BUY", false) => "Buy",
        ("BUY", true) => "Bought",
        (_, false) => "Sell",
        _ => "Sold",
    };
    let symbol = if with_symbol { format!(" {}", o.symbol) } else { String::new() };
    let prices: Vec<String> = [o.aux, o.price].iter().flatten().map(|p| format!(" {}", p.normalize())).collect();
    let tif = if o.tif == "DAY" { "Day" } else { &o.tif };
    format!("{verb} {}{symbol} {}{}, {tif}", o.qty.normalize(), type_names(&o.kind).0, prices.concat())
}

/// "the size of the order and how much of it has been filled": the docs show
/// "5" for a whole fill; a partial one is taken as "filled/total".
fn size_and_fills(o: &Order) -> String {
    if o.filled == o.qty {
        o.qty.normalize().to_string()
    } else {
        format!("{}/{}", o.filled.normalize(), o.qty.normalize())
    }
}

pub(super) fn live_order(o: &Order) -> Value {
    let (kind, original) = type_names(&o.kind);
    let mut v = json!({"acct": IBKR_ACCOUNT, "conidex": o.conid.to_string(), "conid": o.conid, "account": IBKR_ACCOUNT,
        "orderId": o.id, "cashCcy": "USD", "sizeAndFills": size_and_fills(o), "orderDesc": description(o, false),
        "description1": o.symbol, "ticker": o.symbol, "secType": "STK", "listingExchange": "NASDAQ.NMS",
        "remainingQuantity": num(o.qty - o.filled), "filledQuantity": num(o.filled), "totalSize": num(o.qty),
        "companyName": format!("{} INC", o.symbol), "status": o.status, "order_ccp_status": o.status,
        "origOrderType": original, "supportsTaxOpt": "1", "lastExecutionTime": utc(o.updated_ms, true),
        "orderType": kind, "bgColor": "#FFFFFF", "fgColor": "#000000", "timeInForce": o.tif,
        "lastExecutionTime_r": o.updated_ms, "side": o.side});
    if let Some(coid) = &o.coid {
        v["order_ref"] = json!(coid);
    }
    // avgPrice is documented as a string; price (older reference) as a number.
    if !o.filled.is_zero() {
        v["avgPrice"] = json!(o.avg.normalize().to_string());
    }
    if let Some(price) = o.price {
        v["price"] = num(price);
    }
    if let Some(aux) = o.aux {
        v["auxPrice"] = num(aux);
    }
    v
}

/// `/iserver/account/order/status/{orderId}`, with the documented fields
/// (sizes and prices are strings there).
pub(super) fn order_status(o: &Order) -> Value {
    let done = !o.working();
    // order_ccp_status is "the status as a code"; the docs' "2" for Filled
    // is FIX OrdStatus, so the other codes are FIX's too.
    let (code, text) = match o.status {
        "Filled" => ("2", "Order Filled"),
        "Cancelled" => ("4", "Order Cancelled"),
        _ if o.filled.is_zero() => ("0", "Order Submitted"),
        _ => ("1", "Order Submitted"),
    };
    let mut v = json!({"sub_type": null, "request_id": "1", "server_id": "0", "order_id": o.id,
        "conidex": o.conid.to_string(), "conid": o.conid, "symbol": o.symbol,
        "side": if o.side == "BUY" { "B" } else { "S" }, "contract_description_1": o.symbol,
        "listing_exchange": "NASDAQ.NMS", "option_acct": "c", "company_name": format!("{} INC", o.symbol),
        "size": quantity(o.qty - o.filled), "total_size": quantity(o.qty), "currency": "USD", "account": IBKR_ACCOUNT,
        "order_type": type_names(&o.kind).1, "cum_fill": quantity(o.filled), "order_status": o.status,
        "order_ccp_status": code, "order_status_description": text, "tif": o.tif, "fg_color": "#FFFFFF",
        "bg_color": "#000000", "order_not_editable": done, "editable_fields": "", "cannot_cancel_order": done,
        "deactivate_order": false, "sec_type": "STK", "available_chart_periods": "#R|1",
        "order_description": description(o, false), "order_description_with_contract": description(o, true),
        "alert_active": 1, "child_order_type": "0", "order_clearing_account": IBKR_ACCOUNT,
        "size_and_fills": size_and_fills(o), "exit_strategy_tool_availability": "1",
        "allowed_duplicate_opposite": true, "order_time": utc(o.placed_ms, true)});
    if !o.filled.is_zero() {
        let average = o.avg.normalize().to_string();
        v["exit_strategy_chart_description"] =
            json!(format!("{} {} @ {average}", if o.side == "BUY" { "Bought" } else { "Sold" }, o.filled.normalize()));
        (v["average_price"], v["exit_strategy_display_price"]) = (json!(average), json!(average));
    }
    // The older reference's order-status model also names these two.
    let (limit, stop) = match o.kind.as_str() {
        "LMT" => (o.price, None),
        "STP" => (None, o.price),
        _ => (o.price.filter(|_| o.kind == "STOP_LIMIT"), o.aux),
    };
    if let Some(limit) = limit {
        v["limit_price"] = json!(limit.normalize().to_string());
    }
    if let Some(stop) = stop {
        v["stop_price"] = json!(stop.normalize().to_string());
    }
    v
}

pub(super) fn position(p: &Position) -> Value {
    json!({"acctId": IBKR_ACCOUNT, "conid": p.conid, "contractDesc": p.symbol, "position": num(p.qty),
        "mktPrice": num(p.last), "mktValue": num(p.qty * p.last), "currency": "USD", "avgCost": num(p.avg),
        "avgPrice": num(p.avg), "realizedPnl": 0.0, "unrealizedPnl": num((p.last - p.avg) * p.qty), "exchs": null,
        "expiry": null, "putOrCall": null, "multiplier": null, "strike": 0.0, "exerciseStyle": null,
        "conExchMap": [], "assetClass": "STK", "undConid": 0, "model": "", "ticker": p.symbol,
        "name": format!("{} INC", p.symbol), "listingExchange": "NASDAQ", "isUS": true})
}

/// `/portfolio/{accountId}/summary`: lowercased tags; the account is taken
/// as a cash account, so buying power is the cash.
pub(super) fn summary(g: &Gateway) -> Value {
    let now = now_ms();
    let entry = |amount: Decimal| json!({"amount": num(amount), "currency": "USD", "isNull": false, "timestamp": now, "value": null, "severity": 0});
    let stock: Decimal = g.positions.iter().map(|p| p.qty * p.last).sum();
    let gross: Decimal = g.positions.iter().map(|p| (p.qty * p.last).abs()).sum();
    json!({"accountcode": {"amount": 0.0, "currency": null, "isNull": false, "timestamp": now, "value": IBKR_ACCOUNT,
            "severity": 0},
        "totalcashvalue": entry(g.cash), "settledcash": entry(g.cash), "availablefunds": entry(g.cash),
        "excessliquidity": entry(g.cash), "buyingpower": entry(g.cash.max(Decimal::ZERO)),
        "netliquidation": entry(g.cash + stock), "equitywithloanvalue": entry(g.cash + stock),
        "grosspositionvalue": entry(gross)})
}

/// `/iserver/account/trades`: the executions of the current day and up to
/// six before (`days`, 1 to 7). Each carries `order_ref` (the cOID) when one
/// was sent; the docs list no order id.
pub(super) fn trades(g: &Gateway, q: &HashMap<String, String>) -> Response {
    let days = match q.get("days").map(|d| d.parse::<i64>()) {
        None => 1,
        Some(Ok(days)) if (1..=7).contains(&days) => days,
        Some(_) => return error(400, "days must be 1 to 7"),
    };
    let since = now_ms() - days * 86_400_000;
    let rows: Vec<Value> = g
        .executions
        .iter()
        .filter(|e| e.time_ms >= since)
        .map(|e| {
            let side = if e.side == "BUY" { "B" } else { "S" };
            let mut row = json!({"execution_id": format!("0000e0d5.{:08x}.01.01", e.id), "symbol": e.symbol,
                "supports_tax_opt": "1", "side": side, "order_description": format!("{} {} @ {}", if side == "B" { "Bot" } else { "Sold" }, e.size, e.price),
                "trade_time": utc(e.time_ms, false), "trade_time_r": e.time_ms, "size": num(e.size),
                "price": e.price.to_string(), "submitter": "user", "exchange": "ISLAND", "commission": "1.0",
                "net_amount": num(e.size * e.price), "account": IBKR_ACCOUNT, "accountCode": IBKR_ACCOUNT,
                "company_name": e.symbol, "contract_description_1": e.symbol, "sec_type": "STK",
                "listing_exchange": "NASDAQ.NMS", "conid": e.conid, "conidEx": e.conid.to_string(),
                "clearing_id": "IB", "clearing_name": "IB", "liquidation_trade": "0", "is_event_trading": "0"});
            if let Some(coid) = &e.coid {
                row["order_ref"] = json!(coid);
            }
            row
        })
        .collect();
    json(200, Value::Array(rows))
}
