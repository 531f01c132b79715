//! The store's Lua scripts (each one atomic step on one key, or two keys of
//! one node), loaded with `SCRIPT LOAD` on every new connection.

use redis::Script;

/// Compare-and-set save: the stored revision must be ARGV[1]. Returns 1
/// when saved, nil when the record is gone, the current record otherwise.
pub(super) const SAVE: &str = r"
local r = redis.call('GETRANGE', KEYS[1], 0, 19)
if r == '' then return false end
if r ~= ARGV[1] then return redis.call('GET', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 1
";

/// Moves the expiry (in the stamp and as the key's TTL) of a live record;
/// the payload is not resent. 1 when touched, 0 when there is no record.
pub(super) const TOUCH: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SETRANGE', KEYS[1], 20, ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
";

/// Regenerate on one node: check the old record's revision, create the new
/// key, delete the old one, as one step. 1 when replaced, 2 when the new key
/// is taken, nil when the old record is gone, the old record on a conflict.
pub(super) const REPLACE: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return false end
if string.sub(v, 1, 20) ~= ARGV[1] then return v end
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
redis.call('SET', KEYS[2], ARGV[2], 'PXAT', ARGV[3])
redis.call('DEL', KEYS[1])
return 1
";

/// Cluster regenerate, first step (the two keys live in different slots):
/// delete the old record if it is at the expected revision. 1 when deleted,
/// nil when gone, the current record on a conflict.
pub(super) const DELETE_IF: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return false end
if string.sub(v, 1, 20) ~= ARGV[1] then return v end
redis.call('DEL', KEYS[1])
return 1
";

/// One of the store's scripts: its source (for `SCRIPT LOAD`) and its hash.
pub(super) struct Lua {
    pub(super) script: Script,
    pub(super) source: &'static str,
}

impl Lua {
    pub(super) fn new(source: &'static str) -> Self {
        Lua {
            script: Script::new(source),
            source,
        }
    }
}
