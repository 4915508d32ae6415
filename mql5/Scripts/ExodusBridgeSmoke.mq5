//+------------------------------------------------------------------+
//|                                           ExodusBridgeSmoke.mq5   |
//|   Checks an installation before the EA goes live.                  |
//+------------------------------------------------------------------+
// Run it once on any chart with the same inputs the EA will use. It checks, without side effects:
//   1. Protocol.mqh matches this terminal's MQL5 constants (ExbSelfCheck);
//   2. the JSON reader/writer round-trips a message;
//   3. every Exodus symbol in InpSymbols resolves to a tradable symbol here (XM suffixes) and shows its
//      contract size and lot rules;
//   4. WebRequest reaches Exodus: the URL is whitelisted (else error 4014), the bridge token is accepted
//      (else 401) and the protocol version matches (else 400). It posts an EMPTY trade report, which
//      changes nothing; it does not poll (that would lease commands) and does not heartbeat (that would
//      mark the account connected while no EA runs).
#property copyright "Exodus"
#property version   "1.00"
#property script_show_inputs

#include <ExodusBridge/Protocol.mqh>
#include <ExodusBridge/Json.mqh>
#include <ExodusBridge/Transport.mqh>
#include <ExodusBridge/Trade.mqh>
#include <ExodusBridge/SelfCheck.mqh>

input string InpBaseUrl       = "https://exodus.example.com"; // Exodus base URL
input string InpToken         = "";                           // Bridge token of the account
input string InpAccount       = "";                           // Exodus account id
input string InpSymbols       = "EURUSD,GBPUSD,USDJPY,AUDUSD"; // Exodus symbols to resolve
input string InpSymbolMap     = "";                           // Name overrides, e.g. XAUUSD=GOLD#
input int    InpHttpTimeoutMs = 3000;                         // WebRequest timeout, ms

void OnStart(void)
  {
   int failures = 0;
   //--- 1
   if(ExbSelfCheck())
      Print("smoke 1/4 ok: Protocol.mqh matches this terminal");
   else
     {
      Print("smoke 1/4 FAILED: Protocol.mqh does not match this terminal (see above)");
      failures++;
     }
   //--- 2
   CExbWriter w;
   w.BeginObject();
   w.Str(EXB_F_ACK_COMMAND_ID, "EXAAAAAAAAAAAAAAAA:NEW");
   w.Dec(EXB_F_ACK_VOLUME, 0.1, 8);
   w.Str(EXB_F_ACK_MESSAGE, "quote \" backslash \\ tab \t done");
   w.BeginArray(EXB_F_COMMAND_FILLINGS);
   w.Int("", 0);
   w.Int("", 1);
   w.EndArray();
   w.EndObject();
   CExbJson doc;
   if(doc.Parse(w.Text()) && doc.GetString(EXB_F_ACK_VOLUME) == "0.1" &&
      doc.GetString(EXB_F_ACK_MESSAGE) == "quote \" backslash \\ tab \t done" &&
      doc.Get(EXB_F_COMMAND_FILLINGS).Size() == 2)
      Print("smoke 2/4 ok: JSON round trip ", w.Text());
   else
     {
      Print("smoke 2/4 FAILED: JSON round trip of ", w.Text());
      failures++;
     }
   //--- 3
   string bases[];
   int n = StringSplit(InpSymbols, StringGetCharacter(",", 0), bases);
   for(int i = 0; i < n; i++)
     {
      StringTrimLeft(bases[i]);
      StringTrimRight(bases[i]);
      string name = ExbResolveSymbol(bases[i], InpSymbolMap);
      if(name == "")
        {
         PrintFormat("smoke 3/4 FAILED: no symbol for %s (add it to InpSymbolMap)", bases[i]);
         failures++;
         continue;
        }
      PrintFormat("smoke 3/4 ok: %s -> %s: contract %s, lots %s..%s step %s, filling mask %I64d, exemode %I64d",
                  bases[i], name, ExbDecimal(SymbolInfoDouble(name, SYMBOL_TRADE_CONTRACT_SIZE), 8),
                  ExbDecimal(SymbolInfoDouble(name, SYMBOL_VOLUME_MIN), 8),
                  ExbDecimal(SymbolInfoDouble(name, SYMBOL_VOLUME_MAX), 8),
                  ExbDecimal(SymbolInfoDouble(name, SYMBOL_VOLUME_STEP), 8),
                  SymbolInfoInteger(name, SYMBOL_FILLING_MODE), SymbolInfoInteger(name, SYMBOL_TRADE_EXEMODE));
     }
   //--- 4
   CExbTransport http;
   http.Init(InpBaseUrl, InpAccount, InpToken, InpHttpTimeoutMs);
   CExbWriter report;
   report.BeginObject();
   report.Int(EXB_F_ID_PROTOCOL, EXB_PROTOCOL_VERSION);
   report.Str(EXB_F_ID_TERMINAL_ID, "smoke-test");
   report.Str(EXB_F_ID_SESSION_ID, "smoke-test");
   report.BeginArray(EXB_F_TRADES_DEALS);
   report.EndArray();
   report.BeginArray(EXB_F_TRADES_ORDERS);
   report.EndArray();
   report.EndObject();
   string answer;
   int status = http.Post(EXB_PATH_TRADES, report.Text(), answer);
   if(status == 200)
      PrintFormat("smoke 4/4 ok: %s accepted the token and protocol %d", http.Url(EXB_PATH_TRADES), EXB_PROTOCOL_VERSION);
   else
     {
      PrintFormat("smoke 4/4 FAILED: HTTP %d (WebRequest error %d): %s", status, http.LastError(),
                  CExbTransport::ErrorMessage(answer));
      failures++;
     }
   PrintFormat("ExodusBridge smoke test: %s", failures == 0 ? "all checks passed" : IntegerToString(failures) + " failed");
  }
