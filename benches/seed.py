"""Seeds a presenced through its batch API (used by the bench scripts).

python3 benches/seed.py BASE TOKEN USERS ONLINE [LAG_USERS [FLEET_USERS]]

A caller (X-User-Id: caller, X-Auth-Token: bench-caller-token); LAG_USERS users
l0000.. with the login token lag-token (examples/cluster_lag.rs writes to them);
FLEET_USERS users f0000.., offline, each with a login token of its own
(fleet-0000.., for benches/fleet.py); USERS users u0000000.. of which ONLINE
have an open connection. The u-users come last, so the log ends with them.
"""
import json
import sys
import urllib.request

base, token, users, online = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lag_users = int(sys.argv[5]) if len(sys.argv) > 5 else 0
fleet_users = int(sys.argv[6]) if len(sys.argv) > 6 else 0


def batch(ops):
    req = urllib.request.Request(base + "/internal/v1/batch", json.dumps({"ops": ops}).encode(),
                                 {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    answer = json.load(urllib.request.urlopen(req))
    assert answer["applied"] == len(ops), answer["errors"][:3]


uid = lambda i: "u%07d" % i
step = users // online
ops = [{"op": "putUser", "userId": "caller", "username": "caller"},
       {"op": "addToken", "userId": "caller", "token": "bench-caller-token"}]
for i in range(lag_users):
    ops += [{"op": "putUser", "userId": "l%04d" % i, "username": "lag.%d" % i},
            {"op": "addToken", "userId": "l%04d" % i, "token": "lag-token"}]
for i in range(fleet_users):
    ops += [{"op": "putUser", "userId": "f%04d" % i, "username": "fleet.%d" % i},
            {"op": "addToken", "userId": "f%04d" % i, "token": "fleet-%04d" % i}]
for i in range(users):
    ops.append({"op": "putUser", "userId": uid(i), "username": "user.%d" % i, "name": "User Number %d" % i, "utcOffset": i % 5})
    if i % step == 0:
        ops.append({"op": "putConnection", "connectionId": "c%d" % i, "userId": uid(i), "status": "online"})
    if len(ops) >= 5000:
        batch(ops)
        ops = []
batch(ops)
