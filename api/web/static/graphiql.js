// Pulse's GraphiQL: the pinned UMD builds served by Pulse itself, a fetcher that adds the API key
// from this tab's sessionStorage (shared with the dashboard), never from the URL.
(function () {
  "use strict";
  var KEY = "pulse.apiKey";
  var input = document.getElementById("key");
  input.value = sessionStorage.getItem(KEY) || "";
  input.addEventListener("input", function () {
    var key = input.value.trim();
    if (key) sessionStorage.setItem(KEY, key);
    else sessionStorage.removeItem(KEY);
  });
  document.getElementById("key-form").addEventListener("submit", function (event) {
    event.preventDefault();
  });
  var endpoint = window.location.pathname;

  function fetcher(params, options) {
    var headers = { "Content-Type": "application/json", Accept: "application/json" };
    var extra = (options && options.headers) || {};
    Object.keys(extra).forEach(function (name) { headers[name] = extra[name]; });
    var key = sessionStorage.getItem(KEY);
    if (key && !headers.Authorization && !headers.authorization) headers.Authorization = "Bearer " + key;
    return fetch(endpoint, { method: "POST", headers: headers, body: JSON.stringify(params) })
      .then(function (response) { return response.json(); });
  }

  function day(offset) {
    var d = new Date();
    d.setUTCHours(0, 0, 0, 0);
    d.setUTCDate(d.getUTCDate() + offset);
    return d.toISOString();
  }

  var query = [
    "# Today's sales of the demo merchant, by hour.",
    "# Paste a key above. Docs (top left): the reference.",
    "query Today($merchant: ID!, $start: DateTime!, $end: DateTime!) {",
    "  metrics(merchantId: $merchant, range: {start: $start, end: $end},",
    "          metrics: [EVENTS, PAYMENTS, GROSS_SALES], granularity: HOUR) {",
    "    series { points { start complete values { metric value } } }",
    "    totals { metric value errorBound }",
    "    meta { sources watermark tookMs }",
    "  }",
    "  freshness(merchantId: $merchant) { ingestedThrough rolledUpThrough }",
    "}",
    "",
  ].join("\n");
  var variables = JSON.stringify({ merchant: "m00000", start: day(0), end: day(1) }, null, 2);

  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(React.createElement(GraphiQL, {
    fetcher: fetcher,
    defaultQuery: query,
    query: undefined,
    variables: variables,
    defaultEditorToolsVisibility: true,
    isHeadersEditorEnabled: true,
    shouldPersistHeaders: false,
  }));
})();
