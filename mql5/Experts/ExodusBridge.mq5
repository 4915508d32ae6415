//+------------------------------------------------------------------+
//|                                              ExodusBridge.mq5     |
//|   Connects this terminal's account to Exodus (order routing).      |
//+------------------------------------------------------------------+
// On a timer the EA polls Exodus for commands of its account (new order, cancel, modify), executes
// each with OrderSend, and acknowledges it with the MqlTradeResult. Deals and orders that move to the
// history (OnTradeTransaction) are reported as they happen; a heartbeat carries account, positions and
// symbol specifications; the last tick of every resolved symbol that changed is reported every InpTicksMs
// (Exodus prices this account's orders with them). Protocol: mql5/PROTOCOL.md; install: mql5/README.md.
//
// Never executes a command twice: every command is written to the state file as "in progress" before
// OrderSend and as "done" (with its ack) right after; a restarted EA resends the stored ack of a done
// command and looks an in-progress one up by magic + comment before sending anything.
#property copyright "Exodus"
#property version   "1.10"
#property strict
#property description "Exodus MT5 bridge: executes Exodus orders in this terminal and reports fills."

#include <ExodusBridge/Protocol.mqh>
#include <ExodusBridge/Json.mqh>
#include <ExodusBridge/Transport.mqh>
#include <ExodusBridge/State.mqh>
#include <ExodusBridge/Trade.mqh>
#include <ExodusBridge/SelfCheck.mqh>

input string InpBaseUrl       = "https://exodus.example.com"; // Exodus base URL (whitelist it for WebRequest)
input string InpToken         = "";                           // Bridge token of this account (mt5.accounts)
input string InpAccount       = "";                           // Exodus account id
input int    InpPollMs        = 1000;                         // Poll interval, ms
input ulong  InpMagic         = 20260505;                     // Magic number (Exodus mt5.magic)
input int    InpHeartbeatSec  = 5;                            // Heartbeat interval, s
input string InpSymbols       = "EURUSD,GBPUSD,USDJPY,AUDUSD"; // Exodus symbols to resolve and report
input string InpSymbolMap     = "";                           // Name overrides, e.g. XAUUSD=GOLD#
input int    InpHttpTimeoutMs = 3000;                         // WebRequest timeout, ms
input int    InpTicksMs       = 1000;                         // Tick report interval, ms (0: none; MT5 orders then have no price)

CExbTransport g_http;
CExbState     g_state;
CExbTrader    g_trader;
string        g_session = "";
string        g_lock = "";
bool          g_started = false;
datetime      g_last_heartbeat = 0;
bool          g_heartbeat_ok = false;
string        g_deals[];    // deal JSON objects waiting to be reported
string        g_orders[];   // order JSON objects waiting to be reported
ulong         g_last_ticks = 0;     // GetTickCount64() of the last tick report
long          g_tick_sent_msc[];    // per resolved symbol: MqlTick.time_msc last reported (0: never)
bool          g_ticks_off = false;  // the server has no ticks endpoint (404): stop sending
string        g_ticks_unknown = ""; // the server's last list of names it cannot map (logged when it changes)

//+------------------------------------------------------------------+
//| A random id (terminal id once per installation, session per run) |
//+------------------------------------------------------------------+
string ExbNewId(const string prefix)
  {
   string id = prefix;
   for(int i = 0; i < 15; i++)
      id += StringFormat("%x", MathRand() % 16);
   return id;
  }

//+------------------------------------------------------------------+
//| One EA per account per terminal: a temporary global variable     |
//+------------------------------------------------------------------+
// A global variable holds a double: chart ids do not fit exactly, so the lock keeps the id modulo 1e9.
long ExbChartKey(const long chart) { return chart % 1000000000; }

bool ExbTakeLock(void)
  {
   g_lock = "ExodusBridge." + InpAccount;
   if(GlobalVariableCheck(g_lock))
     {
      long holder = (long)GlobalVariableGet(g_lock);
      for(long c = ChartFirst(); c >= 0; c = ChartNext(c))
         if(c != ChartID() && ExbChartKey(c) == holder)
           {
            PrintFormat("ExodusBridge: account %s is already bridged by the EA on chart %I64d", InpAccount, c);
            return false;
           }
     }
   GlobalVariableTemp(g_lock);
   GlobalVariableSet(g_lock, (double)ExbChartKey(ChartID()));
   return true;
  }

//+------------------------------------------------------------------+
int OnInit(void)
  {
   if(InpBaseUrl == "" || InpToken == "" || InpAccount == "")
     {
      Print("ExodusBridge: set InpBaseUrl, InpToken and InpAccount");
      return INIT_PARAMETERS_INCORRECT;
     }
   if(InpPollMs < 100 || InpHeartbeatSec < 1 || InpTicksMs < 0)
     {
      Print("ExodusBridge: InpPollMs must be >= 100, InpHeartbeatSec >= 1 and InpTicksMs >= 0");
      return INIT_PARAMETERS_INCORRECT;
     }
   if(!ExbSelfCheck())
     {
      Print("ExodusBridge: Protocol.mqh does not match this terminal; not starting");
      return INIT_FAILED;
     }
   if(!ExbTakeLock())
      return INIT_FAILED;
   if(!g_state.Load(InpAccount))
      return INIT_FAILED;
   MathSrand((uint)(GetMicrosecondCount() ^ (ulong)TimeLocal() ^ (ulong)ChartID()));
   if(g_state.terminal_id == "")
     {
      g_state.terminal_id = ExbNewId("T");
      g_state.Save(InpAccount);
     }
   g_session = ExbNewId("S");
   g_http.Init(InpBaseUrl, InpAccount, InpToken, InpHttpTimeoutMs);
   g_trader.Init(InpMagic, InpSymbolMap);
   string bases[];
   int n = StringSplit(InpSymbols, StringGetCharacter(",", 0), bases);
   for(int i = 0; i < n; i++)
     {
      StringTrimLeft(bases[i]);
      StringTrimRight(bases[i]);
      if(bases[i] != "" && g_trader.Resolve(bases[i]) == "")
         PrintFormat("ExodusBridge: no symbol for %s on this account (InpSymbolMap?)", bases[i]);
     }
   g_started = false;  // WebRequest runs from OnTimer: catch-up and first heartbeat on the first tick
   EventSetMillisecondTimer(InpPollMs);
   PrintFormat("ExodusBridge %s: account %s, terminal %s, session %s, magic %I64u, polling %s every %d ms",
               EXB_EA_VERSION, InpAccount, g_state.terminal_id, g_session, InpMagic, InpBaseUrl, InpPollMs);
   return INIT_SUCCEEDED;
  }

//+------------------------------------------------------------------+
void OnDeinit(const int reason)
  {
   EventKillTimer();
   g_state.Save(InpAccount);
   if(g_lock != "" && (long)GlobalVariableGet(g_lock) == ExbChartKey(ChartID()))
      GlobalVariableDel(g_lock);
  }

//+------------------------------------------------------------------+
void ExbIdent(CExbWriter &w)
  {
   w.Int(EXB_F_ID_PROTOCOL, EXB_PROTOCOL_VERSION);
   w.Str(EXB_F_ID_TERMINAL_ID, g_state.terminal_id);
   w.Str(EXB_F_ID_SESSION_ID, g_session);
  }

long ExbToUtcMsc(const long server_msc)
  {
   return server_msc - (long)ExbServerOffset() * 1000;
  }

//+------------------------------------------------------------------+
//| Deals and history orders as JSON (selected by ticket)            |
//+------------------------------------------------------------------+
string ExbDealJson(const ulong t)
  {
   string sym = HistoryDealGetString(t, DEAL_SYMBOL);
   int digits = (int)SymbolInfoInteger(sym, SYMBOL_DIGITS);
   CExbWriter w;
   w.BeginObject();
   w.Ticket(EXB_F_DEAL_DEAL, t);
   w.Ticket(EXB_F_DEAL_ORDER, (ulong)HistoryDealGetInteger(t, DEAL_ORDER));
   w.Ticket(EXB_F_DEAL_POSITION, (ulong)HistoryDealGetInteger(t, DEAL_POSITION_ID));
   w.Str(EXB_F_DEAL_SYMBOL, sym);
   w.Int(EXB_F_DEAL_TYPE, HistoryDealGetInteger(t, DEAL_TYPE));
   w.Int(EXB_F_DEAL_ENTRY, HistoryDealGetInteger(t, DEAL_ENTRY));
   w.Int(EXB_F_DEAL_REASON, HistoryDealGetInteger(t, DEAL_REASON));
   w.Dec(EXB_F_DEAL_VOLUME, HistoryDealGetDouble(t, DEAL_VOLUME), 8);
   w.Dec(EXB_F_DEAL_PRICE, HistoryDealGetDouble(t, DEAL_PRICE), digits);
   w.Dec(EXB_F_DEAL_COMMISSION, HistoryDealGetDouble(t, DEAL_COMMISSION), 2);
   w.Dec(EXB_F_DEAL_FEE, HistoryDealGetDouble(t, DEAL_FEE), 2);
   w.Dec(EXB_F_DEAL_SWAP, HistoryDealGetDouble(t, DEAL_SWAP), 2);
   w.Dec(EXB_F_DEAL_PROFIT, HistoryDealGetDouble(t, DEAL_PROFIT), 2);
   w.Int(EXB_F_DEAL_MAGIC, HistoryDealGetInteger(t, DEAL_MAGIC));
   w.Str(EXB_F_DEAL_COMMENT, HistoryDealGetString(t, DEAL_COMMENT));
   w.Int(EXB_F_DEAL_TIME_MSC, ExbToUtcMsc(HistoryDealGetInteger(t, DEAL_TIME_MSC)));
   w.EndObject();
   return w.Text();
  }

bool ExbFinalState(const long state)
  {
   return state == ORDER_STATE_FILLED || state == ORDER_STATE_CANCELED || state == ORDER_STATE_PARTIAL ||
          state == ORDER_STATE_EXPIRED || state == ORDER_STATE_REJECTED;
  }

string ExbOrderJson(const ulong t)
  {
   string sym = HistoryOrderGetString(t, ORDER_SYMBOL);
   int digits = (int)SymbolInfoInteger(sym, SYMBOL_DIGITS);
   CExbWriter w;
   w.BeginObject();
   w.Ticket(EXB_F_OUPDATE_ORDER, t);
   w.Int(EXB_F_OUPDATE_STATE, HistoryOrderGetInteger(t, ORDER_STATE));
   w.Int(EXB_F_OUPDATE_TYPE, HistoryOrderGetInteger(t, ORDER_TYPE));
   w.Str(EXB_F_OUPDATE_SYMBOL, sym);
   w.Dec(EXB_F_OUPDATE_VOLUME_INITIAL, HistoryOrderGetDouble(t, ORDER_VOLUME_INITIAL), 8);
   w.Dec(EXB_F_OUPDATE_VOLUME_CURRENT, HistoryOrderGetDouble(t, ORDER_VOLUME_CURRENT), 8);
   w.Dec(EXB_F_OUPDATE_PRICE_OPEN, HistoryOrderGetDouble(t, ORDER_PRICE_OPEN), digits);
   w.Int(EXB_F_OUPDATE_MAGIC, HistoryOrderGetInteger(t, ORDER_MAGIC));
   w.Str(EXB_F_OUPDATE_COMMENT, HistoryOrderGetString(t, ORDER_COMMENT));
   w.Int(EXB_F_OUPDATE_TIME_DONE_MSC, ExbToUtcMsc(HistoryOrderGetInteger(t, ORDER_TIME_DONE_MSC)));
   w.EndObject();
   return w.Text();
  }

void ExbQueue(string &queue[], const string json)
  {
   int n = ArraySize(queue);
   ArrayResize(queue, n + 1);
   queue[n] = json;
  }

//+------------------------------------------------------------------+
//| Fills as they happen                                             |
//+------------------------------------------------------------------+
void OnTradeTransaction(const MqlTradeTransaction &trans, const MqlTradeRequest &request, const MqlTradeResult &result)
  {
   if(trans.type == TRADE_TRANSACTION_DEAL_ADD && HistoryDealSelect(trans.deal))
     {
      if((ulong)HistoryDealGetInteger(trans.deal, DEAL_MAGIC) == InpMagic)
         ExbQueue(g_deals, ExbDealJson(trans.deal));
     }
   else if(trans.type == TRADE_TRANSACTION_HISTORY_ADD && HistoryOrderSelect(trans.order))
     {
      if((ulong)HistoryOrderGetInteger(trans.order, ORDER_MAGIC) == InpMagic &&
         ExbFinalState(HistoryOrderGetInteger(trans.order, ORDER_STATE)))
         ExbQueue(g_orders, ExbOrderJson(trans.order));
     }
  }

//+------------------------------------------------------------------+
//| Everything since the cursor, after a (re)start: Exodus dedupes    |
//+------------------------------------------------------------------+
void ExbCatchUp(void)
  {
   ArrayResize(g_deals, 0);   // the history holds everything queued so far
   ArrayResize(g_orders, 0);
   datetime from = (datetime)(g_state.cursor_msc / 1000 + ExbServerOffset() - 60);
   if(!HistorySelect(from, TimeCurrent() + 86400))
      return;
   for(int i = 0; i < HistoryDealsTotal(); i++)
     {
      ulong t = HistoryDealGetTicket(i);
      if(t != 0 && (ulong)HistoryDealGetInteger(t, DEAL_MAGIC) == InpMagic)
         ExbQueue(g_deals, ExbDealJson(t));
     }
   for(int i = 0; i < HistoryOrdersTotal(); i++)
     {
      ulong t = HistoryOrderGetTicket(i);
      if(t != 0 && (ulong)HistoryOrderGetInteger(t, ORDER_MAGIC) == InpMagic &&
         ExbFinalState(HistoryOrderGetInteger(t, ORDER_STATE)))
         ExbQueue(g_orders, ExbOrderJson(t));
     }
  }

long ExbLatestTime(const string &queue[], const int count, const string field)
  {
   long latest = 0;
   for(int i = 0; i < count; i++)
     {
      CExbJson item;
      if(!item.Parse(queue[i]))
         continue;
      long t = item.GetLong(field);
      if(t > latest)
         latest = t;
     }
   return latest;
  }

void ExbDrop(string &queue[], const int count)
  {
   int n = ArraySize(queue);
   for(int i = count; i < n; i++)
      queue[i - count] = queue[i];
   ArrayResize(queue, n - count);
  }

bool ExbFlushTrades(void)
  {
   int nd = ArraySize(g_deals) < 50 ? ArraySize(g_deals) : 50;
   int no = ArraySize(g_orders) < 50 ? ArraySize(g_orders) : 50;
   if(nd == 0 && no == 0)
      return true;
   CExbWriter w;
   w.BeginObject();
   ExbIdent(w);
   w.BeginArray(EXB_F_TRADES_DEALS);
   for(int i = 0; i < nd; i++)
      w.Raw("", g_deals[i]);
   w.EndArray();
   w.BeginArray(EXB_F_TRADES_ORDERS);
   for(int i = 0; i < no; i++)
      w.Raw("", g_orders[i]);
   w.EndArray();
   w.EndObject();
   string answer;
   if(g_http.Post(EXB_PATH_TRADES, w.Text(), answer) != 200)
      return false;
   long latest = ExbLatestTime(g_deals, nd, EXB_F_DEAL_TIME_MSC);
   long latest_order = ExbLatestTime(g_orders, no, EXB_F_OUPDATE_TIME_DONE_MSC);
   if(latest_order > latest)
      latest = latest_order;
   if(latest > g_state.cursor_msc)
     {
      g_state.cursor_msc = latest;
      g_state.Save(InpAccount);
     }
   ExbDrop(g_deals, nd);
   ExbDrop(g_orders, no);
   return true;
  }

//+------------------------------------------------------------------+
//| Heartbeat: terminal, account, positions, orders, symbol specs    |
//+------------------------------------------------------------------+
bool ExbHeartbeat(void)
  {
   CExbWriter w;
   w.BeginObject();
   ExbIdent(w);
   w.Str(EXB_F_HEARTBEAT_EA_VERSION, EXB_EA_VERSION);
   w.Int(EXB_F_HEARTBEAT_SENT_AT_MSC, ExbUtcMsc());
   w.BeginObject(EXB_F_HEARTBEAT_TERMINAL);
   w.Int(EXB_F_TERMINAL_BUILD, TerminalInfoInteger(TERMINAL_BUILD));
   w.Str(EXB_F_TERMINAL_NAME, TerminalInfoString(TERMINAL_NAME));
   w.Str(EXB_F_TERMINAL_COMPANY, TerminalInfoString(TERMINAL_COMPANY));
   w.Str(EXB_F_TERMINAL_SERVER, AccountInfoString(ACCOUNT_SERVER));
   w.Bool(EXB_F_TERMINAL_CONNECTED, TerminalInfoInteger(TERMINAL_CONNECTED) != 0);
   w.Bool(EXB_F_TERMINAL_TRADE_ALLOWED, TerminalInfoInteger(TERMINAL_TRADE_ALLOWED) != 0 &&
          MQLInfoInteger(MQL_TRADE_ALLOWED) != 0);
   w.Int(EXB_F_TERMINAL_SERVER_OFFSET_S, ExbServerOffset());
   w.EndObject();
   w.BeginObject(EXB_F_HEARTBEAT_ACCOUNT);
   w.Int(EXB_F_ACCOUNT_LOGIN, AccountInfoInteger(ACCOUNT_LOGIN));
   w.Str(EXB_F_ACCOUNT_CURRENCY, AccountInfoString(ACCOUNT_CURRENCY));
   w.Dec(EXB_F_ACCOUNT_BALANCE, AccountInfoDouble(ACCOUNT_BALANCE), 2);
   w.Dec(EXB_F_ACCOUNT_EQUITY, AccountInfoDouble(ACCOUNT_EQUITY), 2);
   w.Dec(EXB_F_ACCOUNT_MARGIN, AccountInfoDouble(ACCOUNT_MARGIN), 2);
   w.Dec(EXB_F_ACCOUNT_MARGIN_FREE, AccountInfoDouble(ACCOUNT_MARGIN_FREE), 2);
   w.Int(EXB_F_ACCOUNT_LEVERAGE, AccountInfoInteger(ACCOUNT_LEVERAGE));
   w.Int(EXB_F_ACCOUNT_MARGIN_MODE, AccountInfoInteger(ACCOUNT_MARGIN_MODE));
   w.Int(EXB_F_ACCOUNT_TRADE_MODE, AccountInfoInteger(ACCOUNT_TRADE_MODE));
   w.Bool(EXB_F_ACCOUNT_TRADE_EXPERT, AccountInfoInteger(ACCOUNT_TRADE_EXPERT) != 0);
   w.EndObject();
   w.BeginArray(EXB_F_HEARTBEAT_POSITIONS);
   for(int i = 0; i < PositionsTotal(); i++)
     {
      ulong t = PositionGetTicket(i);
      if(t == 0 || (ulong)PositionGetInteger(POSITION_MAGIC) != InpMagic)
         continue;
      string sym = PositionGetString(POSITION_SYMBOL);
      int digits = (int)SymbolInfoInteger(sym, SYMBOL_DIGITS);
      w.BeginObject();
      w.Ticket(EXB_F_POSITION_TICKET, t);
      w.Str(EXB_F_POSITION_SYMBOL, sym);
      w.Str(EXB_F_POSITION_BASE_SYMBOL, g_trader.BaseOf(sym));
      w.Int(EXB_F_POSITION_TYPE, PositionGetInteger(POSITION_TYPE));
      w.Dec(EXB_F_POSITION_VOLUME, PositionGetDouble(POSITION_VOLUME), 8);
      w.Dec(EXB_F_POSITION_PRICE_OPEN, PositionGetDouble(POSITION_PRICE_OPEN), digits);
      w.Int(EXB_F_POSITION_MAGIC, PositionGetInteger(POSITION_MAGIC));
      w.Str(EXB_F_POSITION_COMMENT, PositionGetString(POSITION_COMMENT));
      w.Ticket(EXB_F_POSITION_IDENTIFIER, (ulong)PositionGetInteger(POSITION_IDENTIFIER));
      w.Int(EXB_F_POSITION_TIME_MSC, ExbToUtcMsc(PositionGetInteger(POSITION_TIME_MSC)));
      w.EndObject();
     }
   w.EndArray();
   w.BeginArray(EXB_F_HEARTBEAT_ORDERS);
   for(int i = 0; i < OrdersTotal(); i++)
     {
      ulong t = OrderGetTicket(i);
      if(t == 0 || (ulong)OrderGetInteger(ORDER_MAGIC) != InpMagic)
         continue;
      string sym = OrderGetString(ORDER_SYMBOL);
      int digits = (int)SymbolInfoInteger(sym, SYMBOL_DIGITS);
      w.BeginObject();
      w.Ticket(EXB_F_PORDER_TICKET, t);
      w.Str(EXB_F_PORDER_SYMBOL, sym);
      w.Str(EXB_F_PORDER_BASE_SYMBOL, g_trader.BaseOf(sym));
      w.Int(EXB_F_PORDER_TYPE, OrderGetInteger(ORDER_TYPE));
      w.Int(EXB_F_PORDER_STATE, OrderGetInteger(ORDER_STATE));
      w.Dec(EXB_F_PORDER_VOLUME_INITIAL, OrderGetDouble(ORDER_VOLUME_INITIAL), 8);
      w.Dec(EXB_F_PORDER_VOLUME_CURRENT, OrderGetDouble(ORDER_VOLUME_CURRENT), 8);
      w.Dec(EXB_F_PORDER_PRICE_OPEN, OrderGetDouble(ORDER_PRICE_OPEN), digits);
      w.Dec(EXB_F_PORDER_PRICE_STOPLIMIT, OrderGetDouble(ORDER_PRICE_STOPLIMIT), digits);
      w.Int(EXB_F_PORDER_MAGIC, OrderGetInteger(ORDER_MAGIC));
      w.Str(EXB_F_PORDER_COMMENT, OrderGetString(ORDER_COMMENT));
      w.EndObject();
     }
   w.EndArray();
   w.BeginArray(EXB_F_HEARTBEAT_SYMBOLS);
   string bases[], names[];
   int n = g_trader.Resolved(bases, names);
   for(int i = 0; i < n; i++)
     {
      string sym = names[i];
      w.BeginObject();
      w.Str(EXB_F_SYMBOL_SYMBOL, bases[i]);
      w.Str(EXB_F_SYMBOL_BROKER_SYMBOL, sym);
      w.Dec(EXB_F_SYMBOL_CONTRACT_SIZE, SymbolInfoDouble(sym, SYMBOL_TRADE_CONTRACT_SIZE), 8);
      w.Dec(EXB_F_SYMBOL_VOLUME_MIN, SymbolInfoDouble(sym, SYMBOL_VOLUME_MIN), 8);
      w.Dec(EXB_F_SYMBOL_VOLUME_STEP, SymbolInfoDouble(sym, SYMBOL_VOLUME_STEP), 8);
      w.Dec(EXB_F_SYMBOL_VOLUME_MAX, SymbolInfoDouble(sym, SYMBOL_VOLUME_MAX), 8);
      w.Int(EXB_F_SYMBOL_DIGITS, SymbolInfoInteger(sym, SYMBOL_DIGITS));
      w.Int(EXB_F_SYMBOL_FILLING_MODE, SymbolInfoInteger(sym, SYMBOL_FILLING_MODE));
      w.Int(EXB_F_SYMBOL_TRADE_MODE, SymbolInfoInteger(sym, SYMBOL_TRADE_MODE));
      w.Int(EXB_F_SYMBOL_EXEMODE, SymbolInfoInteger(sym, SYMBOL_TRADE_EXEMODE));
      w.EndObject();
     }
   w.EndArray();
   w.EndObject();
   string answer;
   g_last_heartbeat = TimeLocal();  // a refused heartbeat is retried at the normal pace, not on every tick
   int status = g_http.Post(EXB_PATH_HEARTBEAT, w.Text(), answer);
   g_heartbeat_ok = (status == 200);
   if(status != 200)
      return false;
   CExbJson reply;
   if(reply.Parse(answer) && reply.GetString(EXB_F_HBREPLY_STATUS) != EXB_LINK_ALIVE)
     {
      PrintFormat("ExodusBridge: %s", reply.GetString(EXB_F_HBREPLY_STATUS));
      CExbJson *breaks = reply.Get(EXB_F_HBREPLY_BREAKS);
      for(int i = 0; breaks != NULL && i < breaks.Size(); i++)
         PrintFormat("ExodusBridge: reconciliation: %s", breaks.At(i).text);
     }
   return true;
  }

//+------------------------------------------------------------------+
//| Ticks: the last tick of each resolved symbol that changed        |
//+------------------------------------------------------------------+
// Exodus keeps the latest quote per symbol and refuses to price an order with a quote older than its
// limit (30 s by default), so a symbol whose tick time does not move (market closed) stops pricing orders.
bool ExbSendTicks(void)
  {
   if(InpTicksMs <= 0 || g_ticks_off || GetTickCount64() - g_last_ticks < (ulong)InpTicksMs)
      return true;
   g_last_ticks = GetTickCount64();
   string bases[], names[];
   int n = g_trader.Resolved(bases, names);
   if(ArraySize(g_tick_sent_msc) != n)
     {
      ArrayResize(g_tick_sent_msc, n);
      ArrayInitialize(g_tick_sent_msc, 0);
     }
   long sending[];
   ArrayResize(sending, n);
   int count = 0;
   CExbWriter w;
   w.BeginObject();
   ExbIdent(w);
   w.Int(EXB_F_TICKS_SENT_AT_MSC, ExbUtcMsc());
   w.BeginArray(EXB_F_TICKS_TICKS);
   for(int i = 0; i < n; i++)
     {
      MqlTick tick;
      sending[i] = g_tick_sent_msc[i];
      if(!SymbolInfoTick(names[i], tick) || tick.time_msc == g_tick_sent_msc[i])
         continue;
      int digits = (int)SymbolInfoInteger(names[i], SYMBOL_DIGITS);
      w.BeginObject();
      w.Str(EXB_F_TICK_BROKER_SYMBOL, names[i]);
      w.Dec(EXB_F_TICK_BID, tick.bid, digits);
      w.Dec(EXB_F_TICK_ASK, tick.ask, digits);
      w.Dec(EXB_F_TICK_LAST, tick.last, digits);
      w.Int(EXB_F_TICK_TIME_MSC, ExbToUtcMsc(tick.time_msc));
      w.EndObject();
      sending[i] = tick.time_msc;
      count++;
     }
   w.EndArray();
   w.EndObject();
   if(count == 0)
      return true;
   string answer;
   int status = g_http.Post(EXB_PATH_TICKS, w.Text(), answer);
   if(status == 404)
     {
      g_ticks_off = true;  // an Exodus that predates ticks: orders are priced elsewhere or refused there
      Print("ExodusBridge: this Exodus takes no ticks; not sending them again");
      return false;
     }
   if(status == 409 && g_heartbeat_ok)
      g_last_heartbeat = 0;  // HEARTBEAT_FIRST, as for polls
   if(status != 200)
      return false;  // not recorded as sent: the same ticks (or newer) go next time
   ArrayCopy(g_tick_sent_msc, sending);
   CExbJson reply;
   if(reply.Parse(answer))
     {
      string unknown = "";
      CExbJson *names_unknown = reply.Get(EXB_F_TICKSREPLY_UNKNOWN);
      for(int i = 0; names_unknown != NULL && i < names_unknown.Size(); i++)
         unknown += (i > 0 ? "," : "") + names_unknown.At(i).text;
      if(unknown != g_ticks_unknown && unknown != "")
         PrintFormat("ExodusBridge: Exodus cannot map these symbols to its own: %s (InpSymbols/InpSymbolMap?)", unknown);
      g_ticks_unknown = unknown;
     }
   return true;
  }

//+------------------------------------------------------------------+
//| Acks: send, remember what Exodus has                             |
//+------------------------------------------------------------------+
void ExbSendAck(const int idx)
  {
   string answer;
   int status = g_http.Post(EXB_PATH_ACK, g_state.entries[idx].ack, answer);
   // 404/409: Exodus will never take this ack (unknown or withdrawn command): stop resending it.
   if(status == 200 || status == 404 || status == 409)
     {
      g_state.entries[idx].sent = true;
      g_state.Save(InpAccount);
     }
  }

void ExbResendAcks(void)
  {
   for(int i = 0; i < ArraySize(g_state.entries); i++)
      if(g_state.entries[i].status == EXB_CMD_DONE && !g_state.entries[i].sent)
         ExbSendAck(i);
  }

//+------------------------------------------------------------------+
//| One command: at most once, whatever happens around it            |
//+------------------------------------------------------------------+
void ExbHandle(CExbJson *cmd)
  {
   string id = cmd.GetString(EXB_F_COMMAND_COMMAND_ID);
   if(id == "")
      return;
   int idx = g_state.Find(id);
   if(idx >= 0 && g_state.entries[idx].status == EXB_CMD_DONE)
     {
      ExbSendAck(idx);  // Exodus did not get it: the same ack again, never a second OrderSend
      return;
     }
   ExbOutcome o;
   ExbOutcomeReset(o);
   bool recovered = false;
   if(idx >= 0 && g_state.entries[idx].status == EXB_CMD_IN_PROGRESS)
      recovered = g_trader.Recover(cmd, o);  // died mid-command: look before sending again
   if(!recovered)
     {
      g_state.Put(id, EXB_CMD_IN_PROGRESS, "");
      g_state.Save(InpAccount);
      string kind = cmd.GetString(EXB_F_COMMAND_KIND);
      if(kind == EXB_KIND_NEW)
         g_trader.ExecuteNew(cmd, o);
      else
         g_trader.ExecuteChange(cmd, o);
     }
   idx = g_state.Put(id, EXB_CMD_DONE, ExbAckJson(id, o, g_state.terminal_id, g_session));
   g_state.Save(InpAccount);
   PrintFormat("ExodusBridge: %s -> retcode %I64d %s %s", id, o.retcode, o.error, o.message);
   ExbSendAck(idx);
  }

bool ExbPoll(void)
  {
   CExbWriter w;
   w.BeginObject();
   ExbIdent(w);
   w.Int(EXB_F_POLL_MAX_COMMANDS, 20);
   w.EndObject();
   string answer;
   int status = g_http.Post(EXB_PATH_POLL, w.Text(), answer);
   if(status == 409 && g_heartbeat_ok)
      g_last_heartbeat = 0;  // HEARTBEAT_FIRST: another EA heartbeated since; claim the account back
   if(status != 200)
      return false;
   CExbJson reply;
   if(!reply.Parse(answer))
     {
      Print("ExodusBridge: unreadable poll answer: ", answer);
      return false;
     }
   CExbJson *commands = reply.Get(EXB_F_POLLREPLY_COMMANDS);
   for(int i = 0; commands != NULL && i < commands.Size(); i++)
      ExbHandle(commands.At(i));
   return true;
  }

//+------------------------------------------------------------------+
void OnTimer(void)
  {
   if(!g_started)
     {
      ExbCatchUp();
      if(!ExbFlushTrades() || !ExbHeartbeat())
         return;  // not reachable yet; try again next tick (the catch-up is requeued then)
      g_started = true;
     }
   ExbResendAcks();
   ExbFlushTrades();
   if(TimeLocal() - g_last_heartbeat >= InpHeartbeatSec)
      ExbHeartbeat();
   ExbPoll();
   ExbFlushTrades();
   ExbSendTicks();
  }
//+------------------------------------------------------------------+
