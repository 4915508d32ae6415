//+------------------------------------------------------------------+
//| Transport.mqh - JSON over HTTP(S) to Exodus with WebRequest        |
//+------------------------------------------------------------------+
// WebRequest is synchronous: it blocks the EA until the answer or the timeout, so keep the timeout
// short (InpHttpTimeoutMs, 3 s by default). The URL must be whitelisted in the terminal:
// Tools > Options > Expert Advisors > "Allow WebRequest for listed URL" (a program cannot add it).
#ifndef EXODUS_BRIDGE_TRANSPORT_MQH
#define EXODUS_BRIDGE_TRANSPORT_MQH

#include "Protocol.mqh"
#include "Json.mqh"

class CExbTransport
  {
private:
   string            m_base;        // e.g. https://exodus.example.com (no trailing slash)
   string            m_account;
   string            m_token;
   int               m_timeout_ms;
   int               m_last_error;  // GetLastError() of the last failed WebRequest, 0 otherwise
   datetime          m_last_hint;   // when the 4014 hint was last printed (once a minute is enough)

public:
                     CExbTransport(void) : m_base(""), m_account(""), m_token(""), m_timeout_ms(3000),
                     m_last_error(0), m_last_hint(0) {}

   void              Init(const string base, const string account, const string token, const int timeout_ms)
     {
      m_base = base;
      while(StringLen(m_base) > 0 && StringGetCharacter(m_base, StringLen(m_base) - 1) == '/')
         m_base = StringSubstr(m_base, 0, StringLen(m_base) - 1);
      m_account = account;
      m_token = token;
      m_timeout_ms = timeout_ms;
     }

   string            Url(const string path) const { return m_base + EXB_PATH_PREFIX + m_account + path; }
   int               LastError(void) const { return m_last_error; }

   //--- POST a JSON body; returns the HTTP status (-1: no answer) and the answer's body
   int               Post(const string path, const string body, string &answer)
     {
      char data[];
      char result[];
      string result_headers;
      StringToCharArray(body, data, 0, WHOLE_ARRAY, CP_UTF8);
      ArrayResize(data, ArraySize(data) - 1);  // drop the terminating zero StringToCharArray adds
      string headers = "Content-Type: application/json\r\n" +
                       "Authorization: Bearer " + m_token + "\r\n";
      ResetLastError();
      int status = WebRequest("POST", Url(path), headers, m_timeout_ms, data, result, result_headers);
      answer = CharArrayToString(result, 0, WHOLE_ARRAY, CP_UTF8);
      if(status == -1)
        {
         m_last_error = GetLastError();
         Explain(path);
         return -1;
        }
      m_last_error = 0;
      if(status != 200)
         PrintFormat("ExodusBridge: %s answered %d: %s", path, status, ErrorMessage(answer));
      return status;
     }

   //--- the "message" of an Exodus error body, or the raw text
   static string     ErrorMessage(const string answer)
     {
      CExbJson doc;
      if(doc.Parse(answer) && doc.type == EXB_JSON_OBJECT)
         return doc.GetString(EXB_F_ERROR_MESSAGE, answer);
      return answer;
     }

private:
   void              Explain(const string path)
     {
      string why;
      switch(m_last_error)
        {
         case 4014:
            why = "WebRequest is not allowed for this URL: add " + m_base +
                  " under Tools > Options > Expert Advisors > Allow WebRequest for listed URL";
            break;
         case 5200:
            why = "invalid URL " + Url(path) + " (check InpBaseUrl: scheme, host, port)";
            break;
         case 5201:
            why = "could not connect to " + m_base + " (Exodus down, firewall, or wrong port)";
            break;
         case 5202:
            why = "timed out after " + IntegerToString(m_timeout_ms) + " ms";
            break;
         case 5203:
            why = "the HTTP request failed (TLS or proxy problem?)";
            break;
         default:
            why = "WebRequest failed";
        }
      if(m_last_error != 4014 || TimeLocal() - m_last_hint > 60)
        {
         PrintFormat("ExodusBridge: %s: error %d: %s", path, m_last_error, why);
         if(m_last_error == 4014)
            m_last_hint = TimeLocal();
        }
     }
  };

#endif
