import json
from helpers import *

def test_x(app_server):
    n, ans = create_deal(app_server, '"Acme Corp" 50k <@U2|bob> stage:proposal source:web close:2026-12-31')
    print(json.dumps(ans, ensure_ascii=False, indent=1))
    print(deal_row(app_server, 1))
    print(history_rows(app_server, 1))
    a = run_command(app_server, "advance acme", "U2")
    print(json.dumps(a, ensure_ascii=False, indent=1))
    a = run_command(app_server, "advance acme", "U2")
    print(json.dumps(a, ensure_ascii=False, indent=1))
