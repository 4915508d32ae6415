//+------------------------------------------------------------------+
//| State.mqh - what the EA must remember across restarts              |
//+------------------------------------------------------------------+
// MQL5/Files/ExodusBridge/<account>.state, rewritten atomically (temp file + FileMove) on every change:
//   terminal-id <TAB> <id>                 persistent id of this terminal installation (lease owner)
//   cursor      <TAB> <utc msc>            last deal/order time Exodus confirmed (history catch-up start)
//   cmd <TAB> <command_id> <TAB> <1|2> <TAB> <0|1> <TAB> <ack json>
//        status 1 = in progress (OrderSend may have happened), 2 = done (ack recorded); sent 1 = Exodus
//        answered the ack. The ack JSON has no tabs or newlines (the writer escapes them).
// A command is marked in progress BEFORE OrderSend and done right after it, so a restart never sends a
// command twice: a done command's stored ack is sent again; an in-progress one is first looked up at
// the terminal by magic + comment.
#ifndef EXODUS_BRIDGE_STATE_MQH
#define EXODUS_BRIDGE_STATE_MQH

#define EXB_CMD_IN_PROGRESS 1
#define EXB_CMD_DONE        2
#define EXB_STATE_KEEP      500   // commands remembered (the oldest acknowledged ones are forgotten first)

struct ExbCommandEntry
  {
   string            id;
   int               status;
   bool              sent;
   string            ack;
  };

class CExbState
  {
public:
   string            terminal_id;
   long              cursor_msc;
   ExbCommandEntry   entries[];

                     CExbState(void) : terminal_id(""), cursor_msc(0) {}

   string            File(const string account) const { return "ExodusBridge\\" + account + ".state"; }

   bool              Load(const string account)
     {
      ArrayResize(entries, 0);
      string name = File(account);
      if(!FileIsExist(name))
         return true;
      int h = FileOpen(name, FILE_READ | FILE_TXT | FILE_ANSI);
      if(h == INVALID_HANDLE)
        {
         PrintFormat("ExodusBridge: cannot read %s (error %d)", name, GetLastError());
         return false;
        }
      ushort tab = StringGetCharacter("\t", 0);
      while(!FileIsEnding(h))
        {
         string line = FileReadString(h);
         string parts[];
         int n = StringSplit(line, tab, parts);
         if(n >= 2 && parts[0] == "terminal-id")
            terminal_id = parts[1];
         else if(n >= 2 && parts[0] == "cursor")
            cursor_msc = StringToInteger(parts[1]);
         else if(n >= 5 && parts[0] == "cmd")
           {
            int k = ArraySize(entries);
            ArrayResize(entries, k + 1);
            entries[k].id = parts[1];
            entries[k].status = (int)StringToInteger(parts[2]);
            entries[k].sent = parts[3] == "1";
            entries[k].ack = parts[4];
           }
        }
      FileClose(h);
      return true;
     }

   bool              Save(const string account)
     {
      Trim();
      FolderCreate("ExodusBridge");
      string name = File(account);
      string tmp = name + ".tmp";
      int h = FileOpen(tmp, FILE_WRITE | FILE_TXT | FILE_ANSI);
      if(h == INVALID_HANDLE)
        {
         PrintFormat("ExodusBridge: cannot write %s (error %d)", tmp, GetLastError());
         return false;
        }
      FileWriteString(h, "terminal-id\t" + terminal_id + "\n");
      FileWriteString(h, "cursor\t" + IntegerToString(cursor_msc) + "\n");
      for(int i = 0; i < ArraySize(entries); i++)
         FileWriteString(h, "cmd\t" + entries[i].id + "\t" + IntegerToString(entries[i].status) + "\t" +
                         (entries[i].sent ? "1" : "0") + "\t" + entries[i].ack + "\n");
      FileFlush(h);
      FileClose(h);
      if(!FileMove(tmp, 0, name, FILE_REWRITE))
        {
         PrintFormat("ExodusBridge: cannot replace %s (error %d)", name, GetLastError());
         return false;
        }
      return true;
     }

   int               Find(const string id) const
     {
      for(int i = ArraySize(entries) - 1; i >= 0; i--)
         if(entries[i].id == id)
            return i;
      return -1;
     }

   int               Put(const string id, const int status, const string ack)
     {
      int i = Find(id);
      if(i < 0)
        {
         i = ArraySize(entries);
         ArrayResize(entries, i + 1);
         entries[i].id = id;
        }
      entries[i].status = status;
      entries[i].sent = false;
      entries[i].ack = ack;
      return i;
     }

private:
   void              Trim(void)
     {
      int extra = ArraySize(entries) - EXB_STATE_KEEP;
      if(extra <= 0)
         return;
      ExbCommandEntry kept[];
      int k = 0;
      for(int i = 0; i < ArraySize(entries); i++)
        {
         bool forget = extra > 0 && entries[i].status == EXB_CMD_DONE && entries[i].sent;
         if(forget)
           {
            extra--;
            continue;
           }
         ArrayResize(kept, k + 1);
         Copy(kept[k], entries[i]);
         k++;
        }
      ArrayResize(entries, k);
      for(int i = 0; i < k; i++)
         Copy(entries[i], kept[i]);
     }

   static void       Copy(ExbCommandEntry &dst, const ExbCommandEntry &src)
     {
      dst.id = src.id;
      dst.status = src.status;
      dst.sent = src.sent;
      dst.ack = src.ack;
     }
  };

#endif
