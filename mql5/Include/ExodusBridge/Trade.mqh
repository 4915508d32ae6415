//+------------------------------------------------------------------+
//| Trade.mqh - carry out one command: resolve, check, OrderSend       |
//+------------------------------------------------------------------+
// Mirrors brokers/mt5/parsing.py (resolve_symbol, filling_sequence) and the request assembly of
// brokers/mt5/terminal.py. Exodus prepares each command's MqlTradeRequest fields (action, type, volume in
// lots, prices, type_time, expiration, the fillings to try); the EA adds what only the terminal knows:
// the broker's symbol name, the filling mode the symbol accepts, the magic number, the current quote.
#ifndef EXODUS_BRIDGE_TRADE_MQH
#define EXODUS_BRIDGE_TRADE_MQH

#include "Protocol.mqh"
#include "Json.mqh"

//--- the outcome of one command, as the Ack carries it
struct ExbOutcome
  {
   long              retcode;
   long              retcode_external;
   ulong             order;
   ulong             deal;
   double            volume;
   double            price;
   double            bid;
   double            ask;
   string            comment;
   long              request_id;
   string            error;
   string            message;
   string            broker_symbol;
   int               filling;
   bool              recovered;
   int               digits;
  };

void ExbOutcomeReset(ExbOutcome &o)
  {
   o.retcode = 0;
   o.retcode_external = 0;
   o.order = 0;
   o.deal = 0;
   o.volume = 0.0;
   o.price = 0.0;
   o.bid = 0.0;
   o.ask = 0.0;
   o.comment = "";
   o.request_id = 0;
   o.error = "";
   o.message = "";
   o.broker_symbol = "";
   o.filling = -1;
   o.recovered = false;
   o.digits = 8;
  }

//--- UTC now in milliseconds (TimeGMT has second resolution)
long ExbUtcMsc(void)
  {
   return (long)TimeGMT() * 1000;
  }

//--- trade server time minus UTC, rounded to 15 minutes (MT5 reports every time in server time)
int ExbServerOffset(void)
  {
   double diff = (double)((long)TimeTradeServer() - (long)TimeGMT());
   return (int)(MathRound(diff / 900.0) * 900);
  }

//--- the Ack JSON for a command
string ExbAckJson(const string command_id, const ExbOutcome &o, const string terminal_id, const string session_id)
  {
   CExbWriter w;
   w.BeginObject();
   w.Int(EXB_F_ID_PROTOCOL, EXB_PROTOCOL_VERSION);
   w.Str(EXB_F_ID_TERMINAL_ID, terminal_id);
   w.Str(EXB_F_ID_SESSION_ID, session_id);
   w.Str(EXB_F_ACK_COMMAND_ID, command_id);
   w.Int(EXB_F_ACK_RETCODE, o.retcode);
   w.Int(EXB_F_ACK_RETCODE_EXTERNAL, o.retcode_external);
   w.Ticket(EXB_F_ACK_ORDER, o.order);
   w.Ticket(EXB_F_ACK_DEAL, o.deal);
   w.Dec(EXB_F_ACK_VOLUME, o.volume, 8);
   w.Dec(EXB_F_ACK_PRICE, o.price, o.digits);
   w.Dec(EXB_F_ACK_BID, o.bid, o.digits);
   w.Dec(EXB_F_ACK_ASK, o.ask, o.digits);
   w.Str(EXB_F_ACK_COMMENT, o.comment);
   w.Int(EXB_F_ACK_REQUEST_ID, o.request_id);
   w.Str(EXB_F_ACK_ERROR, o.error);
   w.Str(EXB_F_ACK_MESSAGE, o.message);
   w.Str(EXB_F_ACK_BROKER_SYMBOL, o.broker_symbol);
   w.Int(EXB_F_ACK_FILLING, o.filling);
   w.Bool(EXB_F_ACK_RECOVERED, o.recovered);
   w.Int(EXB_F_ACK_EXECUTED_AT_MSC, ExbUtcMsc());
   w.EndObject();
   return w.Text();
  }

//--- "XAUUSD=GOLD#,US500=US500Cash" -> the override for base, or ""
string ExbOverride(const string base, const string overrides)
  {
   string pairs[];
   int n = StringSplit(overrides, StringGetCharacter(",", 0), pairs);
   for(int i = 0; i < n; i++)
     {
      string kv[];
      if(StringSplit(pairs[i], StringGetCharacter("=", 0), kv) != 2)
         continue;
      string k = kv[0];
      string v = kv[1];
      StringTrimLeft(k);
      StringTrimRight(k);
      StringTrimLeft(v);
      StringTrimRight(v);
      if(k == base)
         return v;
     }
   return "";
  }

//--- resolve_symbol (parsing.py): override, exact name, else the shortest name with a suffix
string ExbResolveSymbol(const string base, const string overrides)
  {
   string wanted = ExbOverride(base, overrides);
   int total = SymbolsTotal(false);
   if(wanted != "")
     {
      for(int i = 0; i < total; i++)
         if(SymbolName(i, false) == wanted)
            return wanted;
      return "";
     }
   string best = "";
   for(int i = 0; i < total; i++)
     {
      string name = SymbolName(i, false);
      if(name == base)
         return base;
      if(StringLen(name) <= StringLen(base) || StringFind(name, base) != 0)
         continue;
      if(best == "" || StringLen(name) < StringLen(best) ||
         (StringLen(name) == StringLen(best) && StringCompare(name, best, true) < 0))
         best = name;
     }
   return best;
  }

//--- filling_sequence (parsing.py): the preferred modes the symbol allows, else all of them
int ExbFillingSequence(CExbJson *preferred, const long order_type, const long mask, const long exemode, int &out[])
  {
   bool market = (order_type == ORDER_TYPE_BUY || order_type == ORDER_TYPE_SELL);
   bool fok = false, ioc = false, ret = false;
   if(market && (exemode == SYMBOL_TRADE_EXECUTION_REQUEST || exemode == SYMBOL_TRADE_EXECUTION_INSTANT))
      fok = true;
   else
     {
      fok = (mask & SYMBOL_FILLING_FOK) != 0;
      ioc = (mask & SYMBOL_FILLING_IOC) != 0;
      bool limit_like = (order_type == ORDER_TYPE_BUY_LIMIT || order_type == ORDER_TYPE_SELL_LIMIT ||
                         order_type == ORDER_TYPE_BUY_STOP_LIMIT || order_type == ORDER_TYPE_SELL_STOP_LIMIT);
      ret = (exemode == SYMBOL_TRADE_EXECUTION_EXCHANGE) || (exemode == SYMBOL_TRADE_EXECUTION_MARKET && limit_like);
     }
   ArrayResize(out, 0);
   int n = (preferred == NULL) ? 0 : preferred.Size();
   for(int i = 0; i < n; i++)
     {
      int f = (int)StringToInteger(preferred.At(i).text);
      if((f == ORDER_FILLING_FOK && fok) || (f == ORDER_FILLING_IOC && ioc) || (f == ORDER_FILLING_RETURN && ret))
        {
         int k = ArraySize(out);
         ArrayResize(out, k + 1);
         out[k] = f;
        }
     }
   if(ArraySize(out) == 0)
     {
      // The symbol seems to allow none of them: try them all and let the trade server decide (10030).
      ArrayResize(out, n);
      for(int i = 0; i < n; i++)
         out[i] = (int)StringToInteger(preferred.At(i).text);
     }
   return ArraySize(out);
  }

//+------------------------------------------------------------------+
//| Executes commands for one magic number                           |
//+------------------------------------------------------------------+
class CExbTrader
  {
private:
   ulong             m_magic;
   string            m_overrides;
   string            m_bases[];
   string            m_names[];

   static bool       Ours(const string comment, const string order_id)
     {
      // The server may change the end of a comment, never its start.
      return order_id != "" && StringFind(comment, order_id) == 0;
     }

   void              Take(const MqlTradeResult &res, ExbOutcome &o)
     {
      o.retcode = res.retcode;
      o.retcode_external = res.retcode_external;
      o.order = res.order;
      o.deal = res.deal;
      o.volume = res.volume;
      o.price = res.price;
      o.bid = res.bid;
      o.ask = res.ask;
      o.comment = res.comment;
      o.request_id = res.request_id;
     }

   ulong             OpenTicket(const string order_id)
     {
      for(int i = OrdersTotal() - 1; i >= 0; i--)
        {
         ulong t = OrderGetTicket(i);
         if(t != 0 && (ulong)OrderGetInteger(ORDER_MAGIC) == m_magic && Ours(OrderGetString(ORDER_COMMENT), order_id))
            return t;
        }
      return 0;
     }

public:
                     CExbTrader(void) : m_magic(0), m_overrides("") {}

   void              Init(const ulong magic, const string overrides)
     {
      m_magic = magic;
      m_overrides = overrides;
     }

   string            Resolve(const string base)
     {
      for(int i = 0; i < ArraySize(m_bases); i++)
         if(m_bases[i] == base)
            return m_names[i];
      string name = ExbResolveSymbol(base, m_overrides);
      if(name == "")
         return "";
      SymbolSelect(name, true);
      int k = ArraySize(m_bases);
      ArrayResize(m_bases, k + 1);
      ArrayResize(m_names, k + 1);
      m_bases[k] = base;
      m_names[k] = name;
      return name;
     }

   string            BaseOf(const string name)
     {
      for(int i = 0; i < ArraySize(m_names); i++)
         if(m_names[i] == name)
            return m_bases[i];
      return "";
     }

   int               Resolved(string &bases[], string &names[])
     {
      ArrayCopy(bases, m_bases);
      ArrayCopy(names, m_names);
      return ArraySize(m_bases);
     }

   //--- has this command already been carried out? (magic + comment; used before every NEW)
   bool              Recover(CExbJson *cmd, ExbOutcome &o)
     {
      string kind = cmd.GetString(EXB_F_COMMAND_KIND);
      string order_id = cmd.GetString(EXB_F_COMMAND_ORDER_ID);
      ulong ticket = cmd.GetTicket(EXB_F_COMMAND_TICKET);
      if(kind == EXB_KIND_NEW)
        {
         ulong open = OpenTicket(order_id);
         if(open != 0 && OrderSelect(open))
           {
            o.retcode = TRADE_RETCODE_PLACED;
            o.order = open;
            o.broker_symbol = OrderGetString(ORDER_SYMBOL);
            o.volume = OrderGetDouble(ORDER_VOLUME_INITIAL);
            o.price = OrderGetDouble(ORDER_PRICE_OPEN);
            o.recovered = true;
            return true;
           }
        }
      if(!HistorySelect(TimeCurrent() - 7 * 86400, TimeCurrent() + 86400))
         return false;
      for(int i = HistoryOrdersTotal() - 1; i >= 0; i--)
        {
         ulong t = HistoryOrderGetTicket(i);
         if(t == 0 || (ulong)HistoryOrderGetInteger(t, ORDER_MAGIC) != m_magic)
            continue;
         bool match = (ticket != 0) ? (t == ticket) : Ours(HistoryOrderGetString(t, ORDER_COMMENT), order_id);
         if(!match)
            continue;
         long state = HistoryOrderGetInteger(t, ORDER_STATE);
         if(kind == EXB_KIND_NEW)
           {
            bool filled = (state == ORDER_STATE_FILLED || state == ORDER_STATE_PARTIAL);
            o.retcode = filled ? TRADE_RETCODE_DONE : TRADE_RETCODE_PLACED;
            o.order = t;
            o.broker_symbol = HistoryOrderGetString(t, ORDER_SYMBOL);
            o.volume = HistoryOrderGetDouble(t, ORDER_VOLUME_INITIAL) - HistoryOrderGetDouble(t, ORDER_VOLUME_CURRENT);
            o.recovered = true;
            return true;
           }
         if(kind == EXB_KIND_CANCEL && state == ORDER_STATE_CANCELED)
           {
            o.retcode = TRADE_RETCODE_DONE;
            o.order = t;
            o.recovered = true;
            return true;
           }
        }
      if(kind == EXB_KIND_MODIFY)
        {
         ulong live = (ticket != 0) ? ticket : OpenTicket(order_id);
         if(live != 0 && OrderSelect(live))
           {
            int digits = (int)SymbolInfoInteger(OrderGetString(ORDER_SYMBOL), SYMBOL_DIGITS);
            double want = NormalizeDouble(cmd.GetDouble(EXB_F_COMMAND_PRICE), digits);
            if(MathAbs(OrderGetDouble(ORDER_PRICE_OPEN) - want) < MathPow(10, -digits) / 2)
              {
               o.retcode = TRADE_RETCODE_DONE;
               o.order = live;
               o.recovered = true;
               return true;
              }
           }
        }
      return false;
     }

   //--- NEW: market (TRADE_ACTION_DEAL) or pending (TRADE_ACTION_PENDING)
   void              ExecuteNew(CExbJson *cmd, ExbOutcome &o)
     {
      ExbOutcomeReset(o);
      if(Recover(cmd, o))
         return;
      string base = cmd.GetString(EXB_F_COMMAND_SYMBOL);
      string name = Resolve(base);
      if(name == "")
        {
         o.error = EXB_ERR_SYMBOL_NOT_FOUND;
         o.message = "this terminal has no symbol for " + base + " (set InpSymbolMap)";
         return;
        }
      o.broker_symbol = name;
      o.digits = (int)SymbolInfoInteger(name, SYMBOL_DIGITS);
      double contract = SymbolInfoDouble(name, SYMBOL_TRADE_CONTRACT_SIZE);
      double expected = cmd.GetDouble(EXB_F_COMMAND_CONTRACT_SIZE);
      if(MathAbs(contract - expected) > 1e-9 * MathMax(1.0, expected))
        {
         o.error = EXB_ERR_CONTRACT_SIZE_MISMATCH;
         o.message = name + " has contract size " + ExbDecimal(contract, 8) + ", the command assumed " +
                     cmd.GetString(EXB_F_COMMAND_CONTRACT_SIZE);
         return;
        }
      double volume = cmd.GetDouble(EXB_F_COMMAND_VOLUME);
      double vmin = SymbolInfoDouble(name, SYMBOL_VOLUME_MIN);
      double vmax = SymbolInfoDouble(name, SYMBOL_VOLUME_MAX);
      double step = SymbolInfoDouble(name, SYMBOL_VOLUME_STEP);
      double steps = (step > 0) ? volume / step : 0;
      if(volume < vmin - 1e-12 || volume > vmax + 1e-12 || MathAbs(steps - MathRound(steps)) > 1e-6)
        {
         o.error = EXB_ERR_VOLUME_INVALID;
         o.message = ExbDecimal(volume, 8) + " lots is outside " + ExbDecimal(vmin, 8) + ".." +
                     ExbDecimal(vmax, 8) + " in steps of " + ExbDecimal(step, 8);
         return;
        }
      long type = cmd.GetLong(EXB_F_COMMAND_TYPE);
      long action = cmd.GetLong(EXB_F_COMMAND_ACTION);
      int fillings[];
      int n = ExbFillingSequence(cmd.Get(EXB_F_COMMAND_FILLINGS), type, SymbolInfoInteger(name, SYMBOL_FILLING_MODE),
                                 SymbolInfoInteger(name, SYMBOL_TRADE_EXEMODE), fillings);
      for(int i = 0; i < n; i++)
        {
         MqlTradeRequest req;
         MqlTradeResult res;
         ZeroMemory(req);
         ZeroMemory(res);
         req.action = (ENUM_TRADE_REQUEST_ACTIONS)action;
         req.magic = m_magic;
         req.symbol = name;
         req.volume = volume;
         req.type = (ENUM_ORDER_TYPE)type;
         req.type_filling = (ENUM_ORDER_TYPE_FILLING)fillings[i];
         req.type_time = (ENUM_ORDER_TYPE_TIME)cmd.GetLong(EXB_F_COMMAND_TYPE_TIME);
         req.comment = cmd.GetString(EXB_F_COMMAND_ORDER_ID);
         if(action == TRADE_ACTION_DEAL)
           {
            req.price = (type == ORDER_TYPE_BUY) ? SymbolInfoDouble(name, SYMBOL_ASK) : SymbolInfoDouble(name, SYMBOL_BID);
            req.deviation = (ulong)cmd.GetLong(EXB_F_COMMAND_DEVIATION);
           }
         else
           {
            req.price = NormalizeDouble(cmd.GetDouble(EXB_F_COMMAND_PRICE), o.digits);
            req.stoplimit = NormalizeDouble(cmd.GetDouble(EXB_F_COMMAND_STOPLIMIT), o.digits);
            long expiration = cmd.GetLong(EXB_F_COMMAND_EXPIRATION);
            if(expiration > 0)
               req.expiration = (datetime)(expiration + ExbServerOffset());
           }
         ResetLastError();
         bool sent = OrderSend(req, res);
         o.filling = fillings[i];
         Take(res, o);
         if(!sent && res.retcode == 0)
           {
            o.error = EXB_ERR_ORDER_SEND_FAILED;
            o.message = "OrderSend failed before reaching the server, error " + IntegerToString(GetLastError());
           }
         if(res.retcode != TRADE_RETCODE_INVALID_FILL)
            break;
        }
     }

   //--- CANCEL (TRADE_ACTION_REMOVE) or MODIFY (TRADE_ACTION_MODIFY) of a pending order
   void              ExecuteChange(CExbJson *cmd, ExbOutcome &o)
     {
      ExbOutcomeReset(o);
      string kind = cmd.GetString(EXB_F_COMMAND_KIND);
      string order_id = cmd.GetString(EXB_F_COMMAND_ORDER_ID);
      ulong ticket = cmd.GetTicket(EXB_F_COMMAND_TICKET);
      if(ticket == 0)
         ticket = OpenTicket(order_id);
      o.order = ticket;
      if(ticket == 0 || !OrderSelect(ticket))
        {
         o.error = EXB_ERR_ORDER_NOT_FOUND;
         o.message = "order " + (ticket != 0 ? IntegerToString((long)ticket) : order_id) +
                     " is not working at the terminal (filled, canceled or expired)";
         return;
        }
      string name = OrderGetString(ORDER_SYMBOL);
      o.broker_symbol = name;
      o.digits = (int)SymbolInfoInteger(name, SYMBOL_DIGITS);
      MqlTradeRequest req;
      MqlTradeResult res;
      ZeroMemory(req);
      ZeroMemory(res);
      req.order = ticket;
      if(kind == EXB_KIND_CANCEL)
         req.action = TRADE_ACTION_REMOVE;
      else if(kind == EXB_KIND_MODIFY)
        {
         req.action = TRADE_ACTION_MODIFY;
         req.symbol = name;
         req.price = NormalizeDouble(cmd.GetDouble(EXB_F_COMMAND_PRICE), o.digits);
         req.stoplimit = NormalizeDouble(cmd.GetDouble(EXB_F_COMMAND_STOPLIMIT), o.digits);
         req.type_time = (ENUM_ORDER_TYPE_TIME)cmd.GetLong(EXB_F_COMMAND_TYPE_TIME);
         long expiration = cmd.GetLong(EXB_F_COMMAND_EXPIRATION);
         if(expiration > 0)
            req.expiration = (datetime)(expiration + ExbServerOffset());
        }
      else
        {
         o.error = EXB_ERR_UNSUPPORTED_COMMAND;
         o.message = "unknown command kind " + kind;
         return;
        }
      ResetLastError();
      bool sent = OrderSend(req, res);
      Take(res, o);
      if(!sent && res.retcode == 0)
        {
         o.error = EXB_ERR_ORDER_SEND_FAILED;
         o.message = "OrderSend failed before reaching the server, error " + IntegerToString(GetLastError());
        }
     }
  };

#endif
