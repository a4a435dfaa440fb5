"""The server-side merges, as Lua scripts: each runs atomically on the server, so two machines that
write at once can never interleave a read and a write of the same key.

The rules are stated in ``records.py``. They must run where the data is, so they are written in Lua;
``tests/integration/test_shared_merge.py`` checks on a real server that any order of the same
writes leaves the same state.
"""

from __future__ import annotations

from typing import Final

#: KEYS: window hash, the account's index of windows.
#: ARGV: used %, reset ms (0: none), updated ms, reading, expire-at ms, index member, same-period ms.
#: Returns 1 when the stored reading changed.
MERGE_WINDOW: Final = """
local used = tonumber(ARGV[1])
local resets = tonumber(ARGV[2])
local updated = tonumber(ARGV[3])
local tol = tonumber(ARGV[7])
local cur = redis.call('HMGET', KEYS[1], 'used', 'resets', 'updated')
if cur[3] then
  local cused, cresets, cupdated = tonumber(cur[1]), tonumber(cur[2]), tonumber(cur[3])
  if resets > 0 and cresets > 0 and resets > cresets + tol then
    -- a later period: the old one is over, whatever its usage was
  elseif resets > 0 and cresets > 0 and resets < cresets - tol then
    return 0  -- a reading of a period already over
  elseif updated <= cupdated then
    if resets > 0 and used > cused then
      -- an older reading of this period saw more spent: usage only grows within a period
      redis.call('HSET', KEYS[1], 'used', used)
      return 1
    end
    return 0
  elseif resets > 0 and used < cused then
    used = cused
  end
end
redis.call('HSET', KEYS[1], 'used', used, 'resets', resets, 'updated', updated, 'body', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[5])
redis.call('SADD', KEYS[2], ARGV[6])
redis.call('PEXPIRE', KEYS[2], 40 * 24 * 3600 * 1000)
return 1
"""

#: KEYS: cooldown key. ARGV: until ms, reason, device. Returns 1 when the cooldown grew.
EXTEND_COOLDOWN: Final = """
local cur = redis.call('HGET', KEYS[1], 'until')
if cur and tonumber(cur) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'until', ARGV[1], 'reason', ARGV[2], 'device', ARGV[3])
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
"""

#: KEYS: lease key. ARGV: device, lease ms. Returns 0 when this device holds the lease now (taken or
#: renewed), else the milliseconds until the holder's lease runs out.
TAKE_LEASE: Final = """
local holder = redis.call('GET', KEYS[1])
if not holder or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 0
end
local left = redis.call('PTTL', KEYS[1])
if left < 1 then left = 1 end
return left
"""
