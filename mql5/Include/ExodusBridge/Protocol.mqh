//+------------------------------------------------------------------+
//| Protocol.mqh - the Exodus MT5 bridge wire protocol, version 1      |
//+------------------------------------------------------------------+
// WARNING: must match brokers/mt5/protocol.py (the Python side) and the golden messages in
// tests/brokers/mt5/golden/. tests/brokers/mt5/test_protocol.py parses this file and checks every
// #define below against them; ExbSelfCheck() checks the EXB_MT5_* values against MQL5's own enums
// when the EA starts. The protocol is described in mql5/PROTOCOL.md.
// JSON keys are used ONLY through the EXB_F_* constants: the test refuses raw key literals elsewhere.
#ifndef EXODUS_BRIDGE_PROTOCOL_MQH
#define EXODUS_BRIDGE_PROTOCOL_MQH

#define EXB_PROTOCOL_VERSION 1
#define EXB_EA_VERSION "1.10"

//--- endpoints: EXB_PATH_PREFIX + <account> + EXB_PATH_*
#define EXB_PATH_PREFIX "/api/v1/bridge/mt5/accounts/"
#define EXB_PATH_HEARTBEAT "/heartbeat"
#define EXB_PATH_POLL "/commands/poll"
#define EXB_PATH_ACK "/acks"
#define EXB_PATH_TRADES "/trades"
#define EXB_PATH_TICKS "/ticks"

//--- fields every EA -> Exodus message carries
#define EXB_F_ID_PROTOCOL "protocol"
#define EXB_F_ID_TERMINAL_ID "terminal_id"
#define EXB_F_ID_SESSION_ID "session_id"

//--- Heartbeat (EA -> Exodus, POST .../heartbeat)
#define EXB_F_HEARTBEAT_EA_VERSION "ea_version"
#define EXB_F_HEARTBEAT_SENT_AT_MSC "sent_at_msc"
#define EXB_F_HEARTBEAT_TERMINAL "terminal"
#define EXB_F_HEARTBEAT_ACCOUNT "account"
#define EXB_F_HEARTBEAT_POSITIONS "positions"
#define EXB_F_HEARTBEAT_ORDERS "orders"
#define EXB_F_HEARTBEAT_SYMBOLS "symbols"

//--- Heartbeat.terminal
#define EXB_F_TERMINAL_BUILD "build"
#define EXB_F_TERMINAL_NAME "name"
#define EXB_F_TERMINAL_COMPANY "company"
#define EXB_F_TERMINAL_SERVER "server"
#define EXB_F_TERMINAL_CONNECTED "connected"
#define EXB_F_TERMINAL_TRADE_ALLOWED "trade_allowed"
#define EXB_F_TERMINAL_SERVER_OFFSET_S "server_offset_s"

//--- Heartbeat.account
#define EXB_F_ACCOUNT_LOGIN "login"
#define EXB_F_ACCOUNT_CURRENCY "currency"
#define EXB_F_ACCOUNT_BALANCE "balance"
#define EXB_F_ACCOUNT_EQUITY "equity"
#define EXB_F_ACCOUNT_MARGIN "margin"
#define EXB_F_ACCOUNT_MARGIN_FREE "margin_free"
#define EXB_F_ACCOUNT_LEVERAGE "leverage"
#define EXB_F_ACCOUNT_MARGIN_MODE "margin_mode"
#define EXB_F_ACCOUNT_TRADE_MODE "trade_mode"
#define EXB_F_ACCOUNT_TRADE_EXPERT "trade_expert"

//--- Heartbeat.positions[]
#define EXB_F_POSITION_TICKET "ticket"
#define EXB_F_POSITION_SYMBOL "symbol"
#define EXB_F_POSITION_BASE_SYMBOL "base_symbol"
#define EXB_F_POSITION_TYPE "type"
#define EXB_F_POSITION_VOLUME "volume"
#define EXB_F_POSITION_PRICE_OPEN "price_open"
#define EXB_F_POSITION_MAGIC "magic"
#define EXB_F_POSITION_COMMENT "comment"
#define EXB_F_POSITION_IDENTIFIER "identifier"
#define EXB_F_POSITION_TIME_MSC "time_msc"

//--- Heartbeat.orders[]
#define EXB_F_PORDER_TICKET "ticket"
#define EXB_F_PORDER_SYMBOL "symbol"
#define EXB_F_PORDER_BASE_SYMBOL "base_symbol"
#define EXB_F_PORDER_TYPE "type"
#define EXB_F_PORDER_STATE "state"
#define EXB_F_PORDER_VOLUME_INITIAL "volume_initial"
#define EXB_F_PORDER_VOLUME_CURRENT "volume_current"
#define EXB_F_PORDER_PRICE_OPEN "price_open"
#define EXB_F_PORDER_PRICE_STOPLIMIT "price_stoplimit"
#define EXB_F_PORDER_MAGIC "magic"
#define EXB_F_PORDER_COMMENT "comment"

//--- Heartbeat.symbols[]
#define EXB_F_SYMBOL_SYMBOL "symbol"
#define EXB_F_SYMBOL_BROKER_SYMBOL "broker_symbol"
#define EXB_F_SYMBOL_CONTRACT_SIZE "contract_size"
#define EXB_F_SYMBOL_VOLUME_MIN "volume_min"
#define EXB_F_SYMBOL_VOLUME_STEP "volume_step"
#define EXB_F_SYMBOL_VOLUME_MAX "volume_max"
#define EXB_F_SYMBOL_DIGITS "digits"
#define EXB_F_SYMBOL_FILLING_MODE "filling_mode"
#define EXB_F_SYMBOL_TRADE_MODE "trade_mode"
#define EXB_F_SYMBOL_EXEMODE "exemode"

//--- HeartbeatReply (Exodus -> EA)
#define EXB_F_HBREPLY_PROTOCOL "protocol"
#define EXB_F_HBREPLY_SERVER_TIME "server_time"
#define EXB_F_HBREPLY_STATUS "status"
#define EXB_F_HBREPLY_HEARTBEAT_TIMEOUT_S "heartbeat_timeout_s"
#define EXB_F_HBREPLY_BREAKS "breaks"

//--- PollRequest (EA -> Exodus, POST .../commands/poll)
#define EXB_F_POLL_MAX_COMMANDS "max_commands"

//--- PollReply (Exodus -> EA)
#define EXB_F_POLLREPLY_PROTOCOL "protocol"
#define EXB_F_POLLREPLY_SERVER_TIME "server_time"
#define EXB_F_POLLREPLY_LEASE_SECONDS "lease_seconds"
#define EXB_F_POLLREPLY_COMMANDS "commands"

//--- PollReply.commands[]
#define EXB_F_COMMAND_COMMAND_ID "command_id"
#define EXB_F_COMMAND_KIND "kind"
#define EXB_F_COMMAND_ORDER_ID "order_id"
#define EXB_F_COMMAND_CLIENT_ORDER_ID "client_order_id"
#define EXB_F_COMMAND_SYMBOL "symbol"
#define EXB_F_COMMAND_SIDE "side"
#define EXB_F_COMMAND_ACTION "action"
#define EXB_F_COMMAND_TYPE "type"
#define EXB_F_COMMAND_VOLUME "volume"
#define EXB_F_COMMAND_CONTRACT_SIZE "contract_size"
#define EXB_F_COMMAND_PRICE "price"
#define EXB_F_COMMAND_STOPLIMIT "stoplimit"
#define EXB_F_COMMAND_TYPE_TIME "type_time"
#define EXB_F_COMMAND_EXPIRATION "expiration"
#define EXB_F_COMMAND_FILLINGS "fillings"
#define EXB_F_COMMAND_DEVIATION "deviation"
#define EXB_F_COMMAND_TICKET "ticket"
#define EXB_F_COMMAND_CREATED_AT "created_at"

//--- Ack (EA -> Exodus, POST .../acks)
#define EXB_F_ACK_COMMAND_ID "command_id"
#define EXB_F_ACK_RETCODE "retcode"
#define EXB_F_ACK_RETCODE_EXTERNAL "retcode_external"
#define EXB_F_ACK_ORDER "order"
#define EXB_F_ACK_DEAL "deal"
#define EXB_F_ACK_VOLUME "volume"
#define EXB_F_ACK_PRICE "price"
#define EXB_F_ACK_BID "bid"
#define EXB_F_ACK_ASK "ask"
#define EXB_F_ACK_COMMENT "comment"
#define EXB_F_ACK_REQUEST_ID "request_id"
#define EXB_F_ACK_ERROR "error"
#define EXB_F_ACK_MESSAGE "message"
#define EXB_F_ACK_BROKER_SYMBOL "broker_symbol"
#define EXB_F_ACK_FILLING "filling"
#define EXB_F_ACK_RECOVERED "recovered"
#define EXB_F_ACK_EXECUTED_AT_MSC "executed_at_msc"

//--- AckReply (Exodus -> EA)
#define EXB_F_ACKREPLY_PROTOCOL "protocol"
#define EXB_F_ACKREPLY_COMMAND_ID "command_id"
#define EXB_F_ACKREPLY_STATUS "status"

//--- TradeReport (EA -> Exodus, POST .../trades)
#define EXB_F_TRADES_DEALS "deals"
#define EXB_F_TRADES_ORDERS "orders"

//--- TradeReport.deals[]
#define EXB_F_DEAL_DEAL "deal"
#define EXB_F_DEAL_ORDER "order"
#define EXB_F_DEAL_POSITION "position"
#define EXB_F_DEAL_SYMBOL "symbol"
#define EXB_F_DEAL_TYPE "type"
#define EXB_F_DEAL_ENTRY "entry"
#define EXB_F_DEAL_REASON "reason"
#define EXB_F_DEAL_VOLUME "volume"
#define EXB_F_DEAL_PRICE "price"
#define EXB_F_DEAL_COMMISSION "commission"
#define EXB_F_DEAL_FEE "fee"
#define EXB_F_DEAL_SWAP "swap"
#define EXB_F_DEAL_PROFIT "profit"
#define EXB_F_DEAL_MAGIC "magic"
#define EXB_F_DEAL_COMMENT "comment"
#define EXB_F_DEAL_TIME_MSC "time_msc"

//--- TradeReport.orders[]
#define EXB_F_OUPDATE_ORDER "order"
#define EXB_F_OUPDATE_STATE "state"
#define EXB_F_OUPDATE_TYPE "type"
#define EXB_F_OUPDATE_SYMBOL "symbol"
#define EXB_F_OUPDATE_VOLUME_INITIAL "volume_initial"
#define EXB_F_OUPDATE_VOLUME_CURRENT "volume_current"
#define EXB_F_OUPDATE_PRICE_OPEN "price_open"
#define EXB_F_OUPDATE_MAGIC "magic"
#define EXB_F_OUPDATE_COMMENT "comment"
#define EXB_F_OUPDATE_TIME_DONE_MSC "time_done_msc"

//--- TradeReply (Exodus -> EA)
#define EXB_F_TRADEREPLY_PROTOCOL "protocol"
#define EXB_F_TRADEREPLY_DEALS_NEW "deals_new"
#define EXB_F_TRADEREPLY_DEALS_DUPLICATE "deals_duplicate"
#define EXB_F_TRADEREPLY_ORDERS_NEW "orders_new"
#define EXB_F_TRADEREPLY_ORDERS_DUPLICATE "orders_duplicate"
#define EXB_F_TRADEREPLY_UNMATCHED "unmatched"

//--- Ticks (EA -> Exodus, POST .../ticks): the quotes that price this broker's orders
#define EXB_F_TICKS_SENT_AT_MSC "sent_at_msc"
#define EXB_F_TICKS_TICKS "ticks"

//--- Ticks.ticks[]
#define EXB_F_TICK_BROKER_SYMBOL "broker_symbol"
#define EXB_F_TICK_BID "bid"
#define EXB_F_TICK_ASK "ask"
#define EXB_F_TICK_LAST "last"
#define EXB_F_TICK_TIME_MSC "time_msc"

//--- TicksReply (Exodus -> EA)
#define EXB_F_TICKSREPLY_PROTOCOL "protocol"
#define EXB_F_TICKSREPLY_SERVER_TIME "server_time"
#define EXB_F_TICKSREPLY_ACCEPTED "accepted"
#define EXB_F_TICKSREPLY_UNKNOWN "unknown"

//--- Error body of every 4xx/5xx answer
#define EXB_F_ERROR_STATUS "status"
#define EXB_F_ERROR_MESSAGE "message"
#define EXB_F_ERROR_REASONS "reasons"

//--- ErrorBody.reasons[]
#define EXB_F_REASON_CODE "code"
#define EXB_F_REASON_MESSAGE "message"
#define EXB_F_REASON_FIELD "field"

//--- command kinds (Command.kind)
#define EXB_KIND_NEW "NEW"
#define EXB_KIND_CANCEL "CANCEL"
#define EXB_KIND_MODIFY "MODIFY"

//--- why the EA did not call OrderSend (Ack.error; "" when it did)
#define EXB_ERR_SYMBOL_NOT_FOUND "SYMBOL_NOT_FOUND"
#define EXB_ERR_CONTRACT_SIZE_MISMATCH "CONTRACT_SIZE_MISMATCH"
#define EXB_ERR_VOLUME_INVALID "VOLUME_INVALID"
#define EXB_ERR_ORDER_NOT_FOUND "ORDER_NOT_FOUND"
#define EXB_ERR_ORDER_SEND_FAILED "ORDER_SEND_FAILED"
#define EXB_ERR_UNSUPPORTED_COMMAND "UNSUPPORTED_COMMAND"

//--- answers
#define EXB_ACK_RECORDED "RECORDED"
#define EXB_ACK_DUPLICATE "DUPLICATE"
#define EXB_LINK_CONNECTED "CONNECTED"
#define EXB_LINK_RECONNECTED "RECONNECTED"
#define EXB_LINK_ALIVE "ALIVE"

//--- MQL5 enum values as the protocol carries them (ExbSelfCheck compares them with MQL5's)
#define EXB_MT5_TRADE_ACTION_DEAL 1
#define EXB_MT5_TRADE_ACTION_PENDING 5
#define EXB_MT5_TRADE_ACTION_SLTP 6
#define EXB_MT5_TRADE_ACTION_MODIFY 7
#define EXB_MT5_TRADE_ACTION_REMOVE 8
#define EXB_MT5_ORDER_TYPE_BUY 0
#define EXB_MT5_ORDER_TYPE_SELL 1
#define EXB_MT5_ORDER_TYPE_BUY_LIMIT 2
#define EXB_MT5_ORDER_TYPE_SELL_LIMIT 3
#define EXB_MT5_ORDER_TYPE_BUY_STOP 4
#define EXB_MT5_ORDER_TYPE_SELL_STOP 5
#define EXB_MT5_ORDER_TYPE_BUY_STOP_LIMIT 6
#define EXB_MT5_ORDER_TYPE_SELL_STOP_LIMIT 7
#define EXB_MT5_ORDER_FILLING_FOK 0
#define EXB_MT5_ORDER_FILLING_IOC 1
#define EXB_MT5_ORDER_FILLING_RETURN 2
#define EXB_MT5_ORDER_TIME_GTC 0
#define EXB_MT5_ORDER_TIME_DAY 1
#define EXB_MT5_ORDER_TIME_SPECIFIED 2
#define EXB_MT5_ORDER_STATE_STARTED 0
#define EXB_MT5_ORDER_STATE_PLACED 1
#define EXB_MT5_ORDER_STATE_CANCELED 2
#define EXB_MT5_ORDER_STATE_PARTIAL 3
#define EXB_MT5_ORDER_STATE_FILLED 4
#define EXB_MT5_ORDER_STATE_REJECTED 5
#define EXB_MT5_ORDER_STATE_EXPIRED 6
#define EXB_MT5_DEAL_TYPE_BUY 0
#define EXB_MT5_DEAL_TYPE_SELL 1
#define EXB_MT5_POSITION_TYPE_BUY 0
#define EXB_MT5_POSITION_TYPE_SELL 1
#define EXB_MT5_SYMBOL_FILLING_FOK 1
#define EXB_MT5_SYMBOL_FILLING_IOC 2
#define EXB_MT5_SYMBOL_TRADE_EXECUTION_REQUEST 0
#define EXB_MT5_SYMBOL_TRADE_EXECUTION_INSTANT 1
#define EXB_MT5_SYMBOL_TRADE_EXECUTION_MARKET 2
#define EXB_MT5_SYMBOL_TRADE_EXECUTION_EXCHANGE 3
#define EXB_MT5_SYMBOL_TRADE_MODE_DISABLED 0
#define EXB_MT5_SYMBOL_TRADE_MODE_FULL 4

//--- trade server return codes (MqlTradeResult.retcode)
#define EXB_RETCODE_REQUOTE 10004
#define EXB_RETCODE_REJECT 10006
#define EXB_RETCODE_CANCEL 10007
#define EXB_RETCODE_PLACED 10008
#define EXB_RETCODE_DONE 10009
#define EXB_RETCODE_DONE_PARTIAL 10010
#define EXB_RETCODE_ERROR 10011
#define EXB_RETCODE_TIMEOUT 10012
#define EXB_RETCODE_INVALID 10013
#define EXB_RETCODE_INVALID_VOLUME 10014
#define EXB_RETCODE_INVALID_PRICE 10015
#define EXB_RETCODE_INVALID_STOPS 10016
#define EXB_RETCODE_TRADE_DISABLED 10017
#define EXB_RETCODE_MARKET_CLOSED 10018
#define EXB_RETCODE_NO_MONEY 10019
#define EXB_RETCODE_PRICE_CHANGED 10020
#define EXB_RETCODE_PRICE_OFF 10021
#define EXB_RETCODE_INVALID_EXPIRATION 10022
#define EXB_RETCODE_ORDER_CHANGED 10023
#define EXB_RETCODE_TOO_MANY_REQUESTS 10024
#define EXB_RETCODE_NO_CHANGES 10025
#define EXB_RETCODE_SERVER_DISABLES_AT 10026
#define EXB_RETCODE_CLIENT_DISABLES_AT 10027
#define EXB_RETCODE_LOCKED 10028
#define EXB_RETCODE_FROZEN 10029
#define EXB_RETCODE_INVALID_FILL 10030
#define EXB_RETCODE_CONNECTION 10031
#define EXB_RETCODE_ONLY_REAL 10032
#define EXB_RETCODE_LIMIT_ORDERS 10033
#define EXB_RETCODE_LIMIT_VOLUME 10034
#define EXB_RETCODE_INVALID_ORDER 10035
#define EXB_RETCODE_POSITION_CLOSED 10036
#define EXB_RETCODE_INVALID_CLOSE_VOLUME 10038
#define EXB_RETCODE_CLOSE_ORDER_EXIST 10039
#define EXB_RETCODE_LIMIT_POSITIONS 10040
#define EXB_RETCODE_REJECT_CANCEL 10041
#define EXB_RETCODE_LONG_ONLY 10042
#define EXB_RETCODE_SHORT_ONLY 10043
#define EXB_RETCODE_CLOSE_ONLY 10044
#define EXB_RETCODE_FIFO_CLOSE 10045
#define EXB_RETCODE_HEDGE_PROHIBITED 10046

#endif
