//+------------------------------------------------------------------+
//| Json.mqh - a small JSON reader (CExbJson) and writer (CExbWriter)  |
//+------------------------------------------------------------------+
// Enough JSON for the bridge protocol: objects, arrays, strings (with \uXXXX escapes), numbers,
// true/false/null. Numbers keep their text, so a ticket (ulong) or a decimal string loses nothing
// until the caller converts it. Decimals travel as JSON strings ("0.1"); GetDouble reads both forms.
#ifndef EXODUS_BRIDGE_JSON_MQH
#define EXODUS_BRIDGE_JSON_MQH

enum ENUM_EXB_JSON
  {
   EXB_JSON_NULL,
   EXB_JSON_BOOL,
   EXB_JSON_NUMBER,
   EXB_JSON_STRING,
   EXB_JSON_ARRAY,
   EXB_JSON_OBJECT
  };

//+------------------------------------------------------------------+
//| One JSON value; objects and arrays own their children            |
//+------------------------------------------------------------------+
class CExbJson
  {
public:
   ENUM_EXB_JSON     type;
   string            key;      // member name when inside an object
   string            text;     // string value, or the number as written
   bool              flag;     // boolean value
   CExbJson         *items[];

                     CExbJson(void) : type(EXB_JSON_NULL), key(""), text(""), flag(false) {}
                    ~CExbJson(void) { Clear(); }

   void              Clear(void)
     {
      for(int i = 0; i < ArraySize(items); i++)
         if(CheckPointer(items[i]) == POINTER_DYNAMIC)
            delete items[i];
      ArrayResize(items, 0);
      type = EXB_JSON_NULL;
      text = "";
      flag = false;
     }

   int               Size(void) const { return ArraySize(items); }
   CExbJson         *At(const int i) { return (i >= 0 && i < ArraySize(items)) ? items[i] : NULL; }

   CExbJson         *Get(const string name)
     {
      for(int i = 0; i < ArraySize(items); i++)
         if(items[i].key == name)
            return items[i];
      return NULL;
     }

   bool              IsNull(const string name) { CExbJson *v = Get(name); return v == NULL || v.type == EXB_JSON_NULL; }

   string            GetString(const string name, const string def = "")
     {
      CExbJson *v = Get(name);
      if(v == NULL || v.type == EXB_JSON_NULL)
         return def;
      if(v.type == EXB_JSON_BOOL)
         return v.flag ? "true" : "false";
      return v.text;
     }

   long              GetLong(const string name, const long def = 0)
     {
      CExbJson *v = Get(name);
      if(v == NULL || v.type == EXB_JSON_NULL || v.text == "")
         return def;
      return StringToInteger(v.text);
     }

   ulong             GetTicket(const string name)
     {
      // Tickets are ulong; StringToInteger covers every ticket a server hands out (< 2^63).
      return (ulong)GetLong(name, 0);
     }

   double            GetDouble(const string name, const double def = 0.0)
     {
      CExbJson *v = Get(name);
      if(v == NULL || v.type == EXB_JSON_NULL || v.text == "")
         return def;
      return StringToDouble(v.text);
     }

   bool              GetBool(const string name, const bool def = false)
     {
      CExbJson *v = Get(name);
      if(v == NULL || v.type != EXB_JSON_BOOL)
         return def;
      return v.flag;
     }

   //--- parse a whole document; false (and this value emptied) on a syntax error
   bool              Parse(const string source)
     {
      Clear();
      int pos = 0;
      if(!ParseValue(source, pos, GetPointer(this)))
        {
         Clear();
         return false;
        }
      SkipWhite(source, pos);
      if(pos != StringLen(source))
        {
         Clear();
         return false;
        }
      return true;
     }

private:
   static ushort     CharAt(const string &s, const int pos)
     {
      return pos < StringLen(s) ? StringGetCharacter(s, pos) : 0;
     }

   static void       SkipWhite(const string &s, int &pos)
     {
      int n = StringLen(s);
      while(pos < n)
        {
         ushort c = StringGetCharacter(s, pos);
         if(c != ' ' && c != '\t' && c != '\r' && c != '\n')
            break;
         pos++;
        }
     }

   static int        HexDigit(const ushort c)
     {
      if(c >= '0' && c <= '9')
         return c - '0';
      if(c >= 'a' && c <= 'f')
         return c - 'a' + 10;
      if(c >= 'A' && c <= 'F')
         return c - 'A' + 10;
      return -1;
     }

   static bool       ParseString(const string &s, int &pos, string &out)
     {
      // pos is on the opening quote
      out = "";
      pos++;
      int n = StringLen(s);
      int start = pos;
      while(pos < n)
        {
         ushort c = StringGetCharacter(s, pos);
         if(c == '"')
           {
            out += StringSubstr(s, start, pos - start);
            pos++;
            return true;
           }
         if(c != '\\')
           {
            pos++;
            continue;
           }
         out += StringSubstr(s, start, pos - start);
         pos++;
         if(pos >= n)
            return false;
         ushort e = StringGetCharacter(s, pos);
         switch(e)
           {
            case '"':  out += "\""; break;
            case '\\': out += "\\"; break;
            case '/':  out += "/";  break;
            case 'b':  out += ShortToString(8);  break;
            case 'f':  out += ShortToString(12); break;
            case 'n':  out += "\n"; break;
            case 'r':  out += "\r"; break;
            case 't':  out += "\t"; break;
            case 'u':
              {
               if(pos + 4 >= n)
                  return false;
               int code = 0;
               for(int k = 1; k <= 4; k++)
                 {
                  int d = HexDigit(StringGetCharacter(s, pos + k));
                  if(d < 0)
                     return false;
                  code = code * 16 + d;
                 }
               out += ShortToString((ushort)code);
               pos += 4;
               break;
              }
            default:
               return false;
           }
         pos++;
         start = pos;
        }
      return false;
     }

   static bool       Literal(const string &s, int &pos, const string word)
     {
      if(StringSubstr(s, pos, StringLen(word)) != word)
         return false;
      pos += StringLen(word);
      return true;
     }

   bool              ParseValue(const string &s, int &pos, CExbJson *into)
     {
      SkipWhite(s, pos);
      ushort c = CharAt(s, pos);
      if(c == '{')
         return ParseObject(s, pos, into);
      if(c == '[')
         return ParseArray(s, pos, into);
      if(c == '"')
        {
         into.type = EXB_JSON_STRING;
         return ParseString(s, pos, into.text);
        }
      if(c == 't' || c == 'f')
        {
         into.type = EXB_JSON_BOOL;
         into.flag = (c == 't');
         return Literal(s, pos, c == 't' ? "true" : "false");
        }
      if(c == 'n')
        {
         into.type = EXB_JSON_NULL;
         return Literal(s, pos, "null");
        }
      if(c == '-' || (c >= '0' && c <= '9'))
        {
         int start = pos;
         int n = StringLen(s);
         while(pos < n)
           {
            ushort d = StringGetCharacter(s, pos);
            if((d >= '0' && d <= '9') || d == '-' || d == '+' || d == '.' || d == 'e' || d == 'E')
               pos++;
            else
               break;
           }
         into.type = EXB_JSON_NUMBER;
         into.text = StringSubstr(s, start, pos - start);
         return true;
        }
      return false;
     }

   bool              ParseObject(const string &s, int &pos, CExbJson *into)
     {
      into.type = EXB_JSON_OBJECT;
      pos++;
      SkipWhite(s, pos);
      if(CharAt(s, pos) == '}')
        {
         pos++;
         return true;
        }
      while(true)
        {
         SkipWhite(s, pos);
         if(CharAt(s, pos) != '"')
            return false;
         string name;
         if(!ParseString(s, pos, name))
            return false;
         SkipWhite(s, pos);
         if(CharAt(s, pos) != ':')
            return false;
         pos++;
         CExbJson *child = new CExbJson();
         child.key = name;
         int n = ArraySize(into.items);
         ArrayResize(into.items, n + 1);
         into.items[n] = child;
         if(!ParseValue(s, pos, child))
            return false;
         SkipWhite(s, pos);
         ushort c = CharAt(s, pos);
         pos++;
         if(c == '}')
            return true;
         if(c != ',')
            return false;
        }
      return false;
     }

   bool              ParseArray(const string &s, int &pos, CExbJson *into)
     {
      into.type = EXB_JSON_ARRAY;
      pos++;
      SkipWhite(s, pos);
      if(CharAt(s, pos) == ']')
        {
         pos++;
         return true;
        }
      while(true)
        {
         CExbJson *child = new CExbJson();
         int n = ArraySize(into.items);
         ArrayResize(into.items, n + 1);
         into.items[n] = child;
         if(!ParseValue(s, pos, child))
            return false;
         SkipWhite(s, pos);
         ushort c = CharAt(s, pos);
         pos++;
         if(c == ']')
            return true;
         if(c != ',')
            return false;
        }
      return false;
     }
  };

//+------------------------------------------------------------------+
//| JSON string literal with the escapes JSON requires               |
//+------------------------------------------------------------------+
string ExbQuote(const string value)
  {
   string out = "\"";
   int n = StringLen(value);
   for(int i = 0; i < n; i++)
     {
      ushort c = StringGetCharacter(value, i);
      if(c == '"')
         out += "\\\"";
      else if(c == '\\')
         out += "\\\\";
      else if(c == '\n')
         out += "\\n";
      else if(c == '\r')
         out += "\\r";
      else if(c == '\t')
         out += "\\t";
      else if(c < 0x20)
         out += StringFormat("\\u%04x", c);
      else
         out += ShortToString(c);
     }
   return out + "\"";
  }

//+------------------------------------------------------------------+
//| A decimal as the protocol carries it: a string, no trailing zeros |
//+------------------------------------------------------------------+
string ExbDecimal(const double value, const int digits)
  {
   string s = DoubleToString(value, digits);
   if(StringFind(s, ".") >= 0)
     {
      int n = StringLen(s);
      while(n > 0 && StringGetCharacter(s, n - 1) == '0')
         n--;
      if(n > 0 && StringGetCharacter(s, n - 1) == '.')
         n--;
      s = StringSubstr(s, 0, n);
     }
   if(s == "" || s == "-0")
      s = "0";
   return s;
  }

//+------------------------------------------------------------------+
//| Builds one JSON document; commas are placed automatically        |
//+------------------------------------------------------------------+
class CExbWriter
  {
private:
   string            m_buf;
   bool              m_first[];
   int               m_depth;

   void              Member(const string name)
     {
      if(m_depth > 0)
        {
         if(!m_first[m_depth - 1])
            m_buf += ",";
         m_first[m_depth - 1] = false;
        }
      if(name != "")
         m_buf += ExbQuote(name) + ":";
     }

   void              Open(const string bracket)
     {
      m_buf += bracket;
      ArrayResize(m_first, m_depth + 1);
      m_first[m_depth] = true;
      m_depth++;
     }

public:
                     CExbWriter(void) : m_buf(""), m_depth(0) {}

   void              BeginObject(const string name = "") { Member(name); Open("{"); }
   void              EndObject(void) { m_depth--; m_buf += "}"; }
   void              BeginArray(const string name = "") { Member(name); Open("["); }
   void              EndArray(void) { m_depth--; m_buf += "]"; }

   void              Str(const string name, const string value) { Member(name); m_buf += ExbQuote(value); }
   void              Int(const string name, const long value) { Member(name); m_buf += IntegerToString(value); }
   void              Ticket(const string name, const ulong value) { Member(name); m_buf += IntegerToString((long)value); }
   void              Dec(const string name, const double value, const int digits)
     {
      Member(name);
      m_buf += ExbQuote(ExbDecimal(value, digits));
     }
   void              Bool(const string name, const bool value) { Member(name); m_buf += (value ? "true" : "false"); }
   //--- an already serialized JSON value (an element written by another writer)
   void              Raw(const string name, const string json) { Member(name); m_buf += json; }

   string            Text(void) const { return m_buf; }
  };

#endif
