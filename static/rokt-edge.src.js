/*
 * rokt-edge.js: the rokt-edge browser snippet. It keeps the Rokt click id (rtid) of the landing
 * URL and sends the page's events, with it, to the edge's POST /e. This is the hand-written
 * source: `scripts/build-snippet` minifies it into static/rokt-edge.js, the file served and
 * measured (tests/test_snippet_size.py: gzip -9 <= 1,150 bytes hard, goal <= 1,100).
 *
 * Install (calls made before the script has loaded are queued by the stub and replayed in order):
 *
 *   <script>window.roktEdge=window.roktEdge||function(){(roktEdge.q=roktEdge.q||[]).push(arguments)}</script>
 *   <script defer src="/rokt-edge.js"></script>
 *
 * The design notes (calls, data-* settings, the short wire form, the localStorage record, the
 * click id, consent, delivery, ids, safety) are in docs/snippet.md; "see X" below names a
 * section of that page.
 */
((document, location) => {
  // Segment's name for Rokt's destination, under which the click id travels (see Beside
  // Segment's analytics.js)
  var integration = 'Rokt Conversions API';
  // stored: the localStorage record (see Storage: its keys are short on purpose); consented:
  // consent granted; waiting: events waiting for a consent decision (an array only while
  // pending); newClick: a click id new on this page (from the URL or Rokt's tag)
  var stored, consented, waiting, newClick;

  // ---- safety (see Safety): never throw; every entry point (api, flush, pagehide, middleware,
  // storage) is wrapped
  var safe = (fn) => (...args) => {
    try {
      return fn(...args);
    } catch {}
  };

  // ---- settings: the data-* attributes of our own <script> tag (see Attributes)
  var settings = (document.currentScript || 0).dataset || {};
  var endpoint = settings.endpoint || '/e';
  var cookieName = settings.cookie || 'rtid';
  var maxAge = +settings.maxAge || 2592e3; // seconds: 30 days

  // The functions below are declared in the order that gzips smallest (terser keeps the order;
  // with `writeRecord` beside `readRecord` the file is 2 bytes larger). None of them runs before
  // start.

  // ---- the click-id cookie (see Storage): the click id, with the lifetime data-max-age gives
  // it; '' removes the cookie
  var writeCookie = safe((clickId) => {
    document.cookie =
      cookieName + '=' + encodeURIComponent(clickId) +
      ';path=/;max-age=' + (clickId ? maxAge : 0) + ';SameSite=Lax' +
      (location.protocol == 'https:' ? ';Secure' : '') +
      (settings.cookieDomain ? ';domain=' + settings.cookieDomain : '');
  });

  // ---- delivery (see Delivery): an event is its JSON text (the body), from the API to the queue
  // and back; fetch keepalive, sendBeacon as fallback
  var post = (body) => {
    try {
      // a string body goes as text/plain;charset=UTF-8: CORS-safelisted, so no preflight
      fetch(endpoint, { method: 'POST', body, keepalive: 1, credentials: 'include' }).then(
        (response) => done(body, /^(2|4(?!08|29))/.test(response.status)),
        // When the page is left, Chromium rejects every fetch still in flight ("Failed to
        // fetch") though keepalive delivers it, and the rejection can run before our pagehide
        // listener. Handled a task later, a rejection counts only if the page is still alive;
        // else each fast navigation would queue, and re-send, events that did arrive.
        () => setTimeout(done, 0, body),
      );
    } catch {
      done(body, navigator.sendBeacon(endpoint, body));
    }
  };

  // ---- storage (see Storage): the localStorage record (written by `writeRecord`, below) and
  // the retry queue in it
  var readRecord = () => safe(() => JSON.parse(localStorage.roktEdge))() || {};
  var flush = safe(() => consented && (readRecord().q || []).forEach(post));
  // ok: delivered, or refused for good (4xx other than 408/429); else kept for a later retry.
  // Two events never have the same text: each has its own messageId. (The defaults read the
  // record without consent too: a read stores nothing.)
  var done = (
    body,
    ok,
    record = readRecord(),
    queue = (record.q || []).filter((queued) => queued != body),
  ) =>
    consented && (ok || queue.push(body), (record.q = queue.slice(-20)), writeRecord(record));

  // ---- ids (see Ids)
  var uuid = () => URL.createObjectURL(new Blob()).slice(-36);

  // ---- consent (see Consent and GPC): granted persists the record (and this page's new click
  // into the cookie) and sends what waited; denied (GPC always) removes everything stored but
  // the decision
  var decide = (granted) => {
    (consented = granted && !navigator.globalPrivacyControl)
      ? (writeRecord({ ...stored, q: readRecord().q }),
        newClick && writeCookie(newClick),
        (waiting || []).forEach(post))
      : (writeRecord({ k: stored.k }), writeCookie(''));
    waiting = 0;
  };

  // ---- the API (see Calls): roktEdge(method, ...), sent in the short form (see The short form)
  var api = safe((method, first, second) => {
    // anything but {ads: <truthy>} is a denial, a missing object too
    if (method == 'consent') decide((stored.k = !!(first || 0).ads));
    else {
      // the wire keys are a protocol with the edge (edge/capture/short_form.py): keep them short
      var body = JSON.stringify({
        t: method, n: first, p: second, u: stored.u, a: stored.a, c: stored.c,
        m: uuid(), s: Date.now(), l: location.href, r: document.referrer, h: document.title,
      });
      // identify(userId), alias(newId): later events carry the new userId
      if ((method == 'identify' || method == 'alias') && first != null && first !== Object(first)) {
        stored.u = '' + first;
        consented && decide(1);
      }
      consented ? post(body) : waiting && waiting.push(body) > 20 && waiting.shift();
    }
  });

  // ---- storage, continued: the record is written whole (here, not beside readRecord: see above)
  var writeRecord = safe((record) => (localStorage.roktEdge = JSON.stringify(record)));

  // ---- beside Segment (see Beside Segment's analytics.js): a source middleware that adds the
  // click id to analytics.js events. Segment's install snippet queues addSourceMiddleware calls
  // until analytics.js has loaded; a page without that stub gets a second try from
  // analytics.ready(), once analytics.js is there. (No analytics on the page: reading the global
  // throws, and safe() ends the attempt.)
  var segment = safe((late) => {
    var analyticsJs = analytics;
    analyticsJs.addSourceMiddleware
      ? analyticsJs.addSourceMiddleware((params) => {
          safe(() => {
            var integrations = params.payload.obj.integrations;
            consented && stored.c && integrations[integration] !== false &&
              (integrations[integration] = { ...integrations[integration], rtid: stored.c });
          })();
          params.next(params.payload);
        })
      : late || analyticsJs.ready(() => segment(1));
  });

  // ---- start: the record, the click id, consent, Segment, retry queue, the stub's calls, page
  safe(() => {
    var query = new URLSearchParams(location.search);
    stored = readRecord();
    stored.a = stored.a || uuid();
    // the cookies read as a query string ("; " as "&"): URL-decoded like the URL's rtid (none
    // when reading them throws)
    var cookies = new URLSearchParams(safe(() => document.cookie.replace(/; /g, '&'))());
    // the click id (see The click id): the URL's, else Rokt's own tag's when it is neither ours
    // nor seen before (the name written out twice gzips smaller than a variable), else the
    // stored one while unexpired, else our cookie's
    var roktClick =
      safe(() => localStorage.RoktTransactionId)() || cookies.get('RoktTransactionId');
    newClick =
      query.get('rtid') ||
      query.get('rclid') ||
      (roktClick != stored.c && roktClick != stored.o && roktClick);
    newClick
      ? ((stored.c = newClick), (stored.x = Date.now() + maxAge * 1e3))
      : stored.x > Date.now() || (stored.c = cookies.get(cookieName));
    roktClick && (stored.o = roktClick);
    // pending while consent is required and undecided (with GPC too: see Consent and GPC)
    waiting = stored.k == null && settings.consent == 'required' ? [] : decide(stored.k != 0);
    segment();
    flush();
    // the stub's calls, before the stub is replaced (the replay never reads the global)
    ((self.roktEdge || 0).q || []).forEach((args) => api(...args));
    self.roktEdge = api;
    addEventListener('pagehide', flush);
    settings.autoPage != 'false' && api('page');
  })();
})(document, location);
