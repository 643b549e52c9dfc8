/*
 * rokt-edge.js: the rokt-edge browser snippet (hand-written source; `scripts/build-snippet`
 * minifies it into static/rokt-edge.js, which is what is served and what the size budget measures:
 * gzip -9 <= 1,150 bytes hard, goal <= 1,100).
 *
 * Install (calls made before the script has loaded are queued by the stub and replayed in order):
 *
 *   <script>window.roktEdge=window.roktEdge||function(){(roktEdge.q=roktEdge.q||[]).push(arguments)}</script>
 *   <script defer src="/rokt-edge.js"></script>
 *
 * API:
 *   roktEdge('page', name?, props?)          (also roktEdge('page', props))
 *   roktEdge('track', event, props)
 *   roktEdge('identify', userId, traits)     (also roktEdge('identify', traits))
 *   roktEdge('group', groupId, traits)
 *   roktEdge('alias', newId)                 previousId = the known userId, else the anonymousId;
 *                                            newId becomes the userId of later events
 *   roktEdge('consent', {ads: true|false})
 * Any other method is sent as it is, and the edge refuses it (400, naming the type): a typo shows
 * in the browser's network panel instead of vanishing.
 *
 * Settings: data-* attributes of this script's own tag.
 *   data-endpoint        where events are POSTed (default "/e"; may be an absolute URL of another
 *                        origin, which must then allow this page's origin with credentials)
 *   data-cookie          name of the first-party click-id cookie (default "rtid")
 *   data-cookie-domain   cookie domain, e.g. "example.com" to share across subdomains
 *                        (default none: a host-only cookie)
 *   data-max-age         lifetime of a stored click id in seconds (default 2592000 = 30 days); it
 *                        applies to the cookie and to the localStorage copy alike
 *   data-consent         "required": store nothing and send nothing until
 *                        roktEdge('consent', {ads: true})
 *   data-auto-page       "false": do not send a page event on load (default: send one)
 *
 * The wire: each event is one POST of the short form, JSON with one-letter keys that the edge
 * expands into Segment's shape (edge/capture/short_form.py says how; Segment's field names would
 * be half of this file's size). What the edge can derive is not sent: path and search (from the
 * URL), the alias's previousId (the userId sent with it, else the anonymousId), the object-only
 * forms page(props) and identify(traits).
 *   t type, n and p the call's two arguments, u the userId known before the call, a anonymousId,
 *   c the click id, m messageId, s timestamp (epoch ms), l URL, r referrer, h title
 *
 * Storage: one localStorage record, key "roktEdge", JSON with the short form's keys where they
 * mean the same (every access guarded: Safari private mode and sandboxed frames throw):
 *   c, x                 the click id and when it expires (ms since epoch; from data-max-age)
 *   o                    the last RoktTransactionId seen (see The click id)
 *   a                    the anonymous id (kept in memory only when localStorage is unavailable)
 *   u                    the userId given to identify / alias
 *   k                    consent: true granted, false denied, the last roktEdge('consent', ...)
 *                        decision
 *   q                    events whose delivery is not yet confirmed, each the JSON text that is
 *                        POSTed (at most 20, oldest dropped)
 * and the cookie <data-cookie> = the click id (path=/; max-age; SameSite=Lax; Secure on https;
 * domain when data-cookie-domain is set). The record is read once per page and written whole
 * (the retry queue excepted: it is read afresh before every change, so tabs share it).
 * The click id: the one in this page's URL (rtid, else rclid, URL-decoded), which replaces the
 * stored one; else Rokt's own tag's (a shop may run Rokt's web SDK too, which keeps the click as
 * RoktTransactionId in localStorage, else in a cookie of that name, URL-decoded, and reads it
 * when the URL has none): when it is neither the stored click nor the last one seen (o), it is a
 * newer click that Rokt's tag saw, and replaces the stored one exactly as a click in the URL does
 * (fresh expiry, our cookie, consent permitting); else the stored one while not expired; else our
 * cookie's. Remembering the last one seen keeps an old RoktTransactionId from taking the click back
 * from a newer URL click, or from reviving an expired one. (The cookie string is read as a query
 * string, "; " for "&", which URL-decodes it as the URL's rtid is. So a foreign cookie whose value
 * holds a raw "&rtid=..." would be read as the click id, only when localStorage has no unexpired
 * one; or a raw "&RoktTransactionId=...", only when localStorage has no RoktTransactionId.)
 *
 * Consent, one rule: events are sent, and anything is stored, only while consent is granted.
 *   - granted: consent not required and not denied, or roktEdge('consent', {ads: true}) was called
 *     (now or on an earlier page).
 *   - pending (data-consent="required", no decision yet): the click id and anonymous id live in
 *     memory only; events wait in memory (at most 20) and are sent the moment consent is granted,
 *     when a click id new on this page (from the URL or Rokt's tag) is also persisted. Leaving the
 *     page before a decision loses them.
 *   - denied (roktEdge('consent', {ads: false}), or navigator.globalPrivacyControl): nothing is
 *     sent and the stored click id, cookie, ids and retry queue are removed. GPC always wins over
 *     an explicit grant: it is the browser-wide opt-out of ad tracking. (The edge still sees
 *     Sec-GPC on any request the page makes to it; the snippet makes none.) With GPC, consent
 *     required and no decision yet, consent is pending as above (nothing is stored or sent);
 *     what an earlier page stored before consent was required stays until the decision, which
 *     under GPC always removes it.
 *
 * Delivery: fetch(endpoint, {keepalive: true}) with JSON as text/plain (a CORS-safelisted content
 * type, so no preflight), navigator.sendBeacon when fetch is missing or throws. An event whose
 * send fails (network error, or an answer other than 2xx and other than a 4xx that is not 408/429:
 * such an event is at fault and a retry cannot help) goes into the queue (q); a queued event
 * leaves it only when a send of it succeeds. The queue is flushed on load and on pagehide. A send
 * made while the page is left cannot be confirmed, so a queued event may be delivered twice:
 * delivery is at least once, and an event keeps its messageId across every retry so the edge can
 * tell.
 *
 * Beside Segment: when window.analytics (analytics.js) has addSourceMiddleware, a source middleware
 * adds integrations["Rokt Conversions API"].rtid to its events, as Segment's Rokt browser plugin
 * does (analytics.js gives every event an integrations object).
 *
 * Ids: the random v4 UUID that ends every blob: URL (any context; crypto.randomUUID exists only
 * in secure contexts, and the empty blob each id names costs nothing).
 *
 * Never break the host page: every entry point catches everything; the only global is roktEdge.
 * A second copy of the script on a page is not guarded against (it would send a second page
 * event); the guard cost 20 gzip bytes.
 */
((d, loc) => {
  var R = 'Rokt Conversions API';
  // S: the stored record (see Storage); c: consent granted; pend: events waiting for a consent
  // decision (an array only while pending); fresh: a click id new on this page (URL or Rokt's tag)
  var S, c, pend, fresh;

  // ---- never throw: every entry point (api, flush, pagehide, middleware, storage) is wrapped
  var safe = (f) => (...a) => {
    try {
      return f(...a);
    } catch {}
  };

  // ---- settings: data-* attributes of our own <script> tag
  var ds = (d.currentScript || 0).dataset || {};
  var endpoint = ds.endpoint || '/e';
  var cname = ds.cookie || 'rtid';
  var age = +ds.maxAge || 2592e3; // seconds: 30 days

  // The functions below are declared in the order that gzips smallest (terser keeps the order;
  // with `put` beside `load` the file is 2 bytes larger). None of them runs before start.

  // ---- the click-id cookie
  // v: the click id, written with the lifetime data-max-age gives it; '': remove the cookie
  var cookie = safe((v) => {
    d.cookie =
      cname + '=' + encodeURIComponent(v) + ';path=/;max-age=' + (v ? age : 0) + ';SameSite=Lax' +
      (loc.protocol == 'https:' ? ';Secure' : '') +
      (ds.cookieDomain ? ';domain=' + ds.cookieDomain : '');
  });

  // ---- sending: an event is its JSON text (the body), from the API to the queue and back;
  // fetch keepalive, sendBeacon as fallback
  var post = (e) => {
    try {
      // a string body goes as text/plain;charset=UTF-8: CORS-safelisted, so no preflight
      fetch(endpoint, { method: 'POST', body: e, keepalive: 1, credentials: 'include' }).then(
        (r) => done(e, /^(2|4(?!08|29))/.test(r.status)),
        // When the page is left, Chromium rejects every fetch still in flight ("Failed to
        // fetch") though keepalive delivers it, and the rejection can run before our pagehide
        // listener. Handled a task later, a rejection counts only if the page is still alive;
        // else each fast navigation would queue, and re-send, events that did arrive.
        () => setTimeout(done, 0, e),
      );
    } catch {
      done(e, navigator.sendBeacon(endpoint, e));
    }
  };

  // ---- the localStorage record (written by `put`, below) and the retry queue in it
  var load = () => safe(() => JSON.parse(localStorage.roktEdge))() || {};
  var flush = safe(() => c && (load().q || []).forEach(post));
  // ok: delivered, or refused for good (4xx other than 408/429); else kept for a later retry.
  // Two events never have the same text: each has its own messageId. (The defaults read the
  // record without consent too: a read stores nothing.)
  var done = (e, ok, s = load(), q = (s.q || []).filter((o) => o != e)) =>
    c && (ok || q.push(e), (s.q = q.slice(-20)), put(s));

  // ids (see Ids)
  var uuid = () => URL.createObjectURL(new Blob()).slice(-36);

  // ---- consent: granted persists the record (and this page's new click into the cookie) and
  // sends what waited; denied (GPC always) removes everything stored but the decision
  var decide = (x) => {
    (c = x && !navigator.globalPrivacyControl)
      ? (put({ ...S, q: load().q }), fresh && cookie(fresh), (pend || []).forEach(post))
      : (put({ k: S.k }), cookie(''));
    pend = 0;
  };

  // ---- the API: roktEdge(method, ...), sent in the short form
  var api = safe((m, a, b) => {
    // anything but {ads: <truthy>} is a denial, a missing object too
    if (m == 'consent') decide((S.k = !!(a || 0).ads));
    else {
      var e = JSON.stringify({ t: m, n: a, p: b, u: S.u, a: S.a, c: S.c, m: uuid(), s: Date.now(), l: loc.href, r: d.referrer, h: d.title });
      // identify(userId), alias(newId): later events carry the new userId
      if ((m == 'identify' || m == 'alias') && a != null && a !== Object(a)) {
        S.u = '' + a;
        c && decide(1);
      }
      c ? post(e) : pend && pend.push(e) > 20 && pend.shift();
    }
  });

  var put = safe((s) => (localStorage.roktEdge = JSON.stringify(s)));

  // ---- beside Segment: a source middleware that adds the click id to analytics.js events.
  // Segment's install snippet queues addSourceMiddleware calls until analytics.js has loaded; a
  // page without that stub gets a second try from analytics.ready(), once analytics.js is there.
  // (No analytics on the page: reading the global throws, and safe() ends the attempt.)
  var segment = safe((late) => {
    var a = analytics;
    a.addSourceMiddleware
      ? a.addSourceMiddleware((m) => {
          safe(() => {
            var i = m.payload.obj.integrations;
            c && S.c && i[R] !== false && (i[R] = { ...i[R], rtid: S.c });
          })();
          m.next(m.payload);
        })
      : late || a.ready(() => segment(1));
  });

  // ---- start: the record, the click id, consent, Segment, retry queue, the stub's calls, page
  safe(() => {
    var sp = new URLSearchParams(loc.search);
    S = load();
    S.a = S.a || uuid();
    // the cookies read as a query string ("; " as "&"): URL-decoded like the URL's rtid (none
    // when reading them throws)
    var jar = new URLSearchParams(safe(() => d.cookie.replace(/; /g, '&'))());
    // Rokt's own tag's click (see The click id): a newer click when neither ours nor seen before
    // (the name written out twice gzips smaller than a variable)
    var r = safe(() => localStorage.RoktTransactionId)() || jar.get('RoktTransactionId');
    fresh = sp.get('rtid') || sp.get('rclid') || (r != S.c && r != S.o && r);
    fresh
      ? ((S.c = fresh), (S.x = Date.now() + age * 1e3))
      : S.x > Date.now() || (S.c = jar.get(cname));
    r && (S.o = r);
    // pending while consent is required and undecided (with GPC too: see Consent)
    pend = S.k == null && ds.consent == 'required' ? [] : decide(S.k != 0);
    segment();
    flush();
    // the stub's calls, before the stub is replaced (the replay never reads the global)
    ((self.roktEdge || 0).q || []).forEach((args) => api(...args));
    self.roktEdge = api;
    addEventListener('pagehide', flush);
    ds.autoPage != 'false' && api('page');
  })();
})(document, location);
