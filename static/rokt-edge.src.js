/*
 * rokt-edge.js: the rokt-edge browser snippet (hand-written source; `scripts/build-snippet`
 * minifies it into static/rokt-edge.js, which is what is served and what the size budget measures:
 * gzip -9 <= 1,500 bytes hard, goal <= 1,100).
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
 * Storage: one localStorage record, key "rokt-edge", JSON (read afresh before every change, so
 * tabs share it; every access guarded: Safari private mode and sandboxed frames throw):
 *   rtid, exp            the click id and when it expires (ms since epoch; from data-max-age)
 *   aid                  the anonymous id (kept in memory only when localStorage is unavailable)
 *   uid                  the userId given to identify / alias
 *   consent              1 granted, 0 denied: the last roktEdge('consent', ...) decision
 *   q                    events whose delivery is not yet confirmed (at most 20, oldest dropped)
 * and the cookie <data-cookie> = the click id (path=/; max-age; SameSite=Lax; Secure on https;
 * domain when data-cookie-domain is set).
 *
 * Consent, one rule: events are sent, and anything is stored, only while consent is granted.
 *   - granted: consent not required and not denied, or roktEdge('consent', {ads: true}) was called
 *     (now or on an earlier page).
 *   - pending (data-consent="required", no decision yet): the click id and anonymous id live in
 *     memory only; events wait in memory (at most 20) and are sent the moment consent is granted,
 *     when the click id from this page's URL is also persisted. Leaving the page before a decision
 *     loses them.
 *   - denied (roktEdge('consent', {ads: false}), or navigator.globalPrivacyControl === true):
 *     nothing is sent and the stored click id, cookie, ids and retry queue are removed. GPC always
 *     wins over an explicit grant: it is the browser-wide opt-out of ad tracking. (The edge still
 *     sees Sec-GPC on any request the page makes to it; the snippet makes none.)
 *
 * Delivery: fetch(endpoint, {keepalive: true}) with JSON as text/plain (a CORS-safelisted content
 * type, so no preflight), navigator.sendBeacon when fetch is missing or throws. An event whose
 * send fails (network error, or a non-2xx answer other than a 4xx that is not 408/429: such an
 * event is at fault and a retry cannot help) goes into the queue (q); a queued event leaves it
 * only when a send of it succeeds. The queue is flushed on load and on pagehide. A send made while
 * the page is left cannot be confirmed, so a queued event may be delivered twice: delivery is at
 * least once, and an event keeps its messageId across every retry so the edge can tell.
 *
 * Beside Segment: when window.analytics (analytics.js) has addSourceMiddleware, a source middleware
 * adds integrations["Rokt Conversions API"].rtid to its events, as Segment's Rokt browser plugin does.
 *
 * Never break the host page: every entry point catches everything; the only global is roktEdge.
 * A second copy of the script on a page is not guarded against (it would send a second page
 * event); the guard cost 20 gzip bytes.
 */
((w, d, nav, loc) => {
  var R = 'Rokt Conversions API';
  var KEY = 'rokt-edge';
  // c: consent granted; pend: events waiting for a consent decision (an array only while
  // pending); fresh: the click id in this page's URL
  // said: the stored consent decision, 1, 0 or undefined
  var c, pend, rtid, fresh, aid, uid, gpc, said;

  // ---- never throw: every entry point (api, flush, pagehide, middleware, storage) is wrapped
  var safe = (f) => (...a) => {
    try {
      return f(...a);
    } catch (x) {}
  };

  // ---- settings: data-* attributes of our own <script> tag
  var me = d.currentScript || d.querySelector('script[src*="rokt-edge"]');
  var ds = (me && me.dataset) || {};
  var endpoint = ds.endpoint || '/e';
  var cname = ds.cookie || 'rtid';
  var age = +ds.maxAge || 2592e3; // seconds: 30 days

  // ---- storage: one localStorage record (read afresh before each change, so tabs share it)
  // and the click-id cookie
  var load = () => safe(() => JSON.parse(localStorage[KEY]))() || {};
  var save = safe((f) => {
    var s = load();
    f(s);
    localStorage[KEY] = JSON.stringify(s);
  });
  var cookie = safe((v, maxAge) => {
    d.cookie =
      cname + '=' + encodeURIComponent(v) + ';path=/;max-age=' + maxAge + ';SameSite=Lax' +
      (loc.protocol == 'https:' ? ';Secure' : '') +
      (ds.cookieDomain ? ';domain=' + ds.cookieDomain : '');
  });
  var readCookie = safe(() =>
    decodeURIComponent(d.cookie.match('(^|; )' + cname + '=([^;]*)')[2]),
  );

  // ---- ids: crypto.randomUUID (secure contexts only), else the random v4 UUID that ends every
  // blob: URL (any context; the empty blob it names costs nothing)
  var uuid = () =>
    crypto.randomUUID ? crypto.randomUUID() : URL.createObjectURL(new Blob()).slice(-36);

  // ---- consent: grant() persists what memory holds; forget() removes everything stored
  var grant = () =>
    save((s) => {
      // the stored click id: localStorage first (while not expired), then the cookie
      rtid = s.exp > Date.now() ? s.rtid : readCookie();
      if (fresh && fresh != rtid) {
        s.rtid = rtid = fresh;
        s.exp = Date.now() + age * 1e3;
        cookie(fresh, age);
      }
      s.aid = aid;
      s.uid = uid;
      s.consent = said;
    });
  var forget = () => {
    safe(() => (localStorage[KEY] = JSON.stringify({ consent: said })))();
    cookie('', 0);
  };

  // ---- sending: fetch keepalive, sendBeacon as fallback; the queue holds unconfirmed events
  // ok: delivered, or refused for good (4xx other than 408/429); else kept for a later retry
  var done = (e, ok) =>
    c &&
    save((s) => {
      var q = (s.q || []).filter((o) => o.messageId != e.messageId);
      ok || q.push(e);
      s.q = q.slice(-20);
    });
  var post = (e) => {
    var body = JSON.stringify(e);
    try {
      // a string body goes as text/plain;charset=UTF-8: CORS-safelisted, so no preflight
      fetch(endpoint, { method: 'POST', body, keepalive: true, credentials: 'include' }).then(
        (r) => done(e, r.ok || /^4(?!08|29)/.test(r.status)),
        // When the page is left, Chromium rejects every fetch still in flight ("Failed to
        // fetch") though keepalive delivers it, and the rejection can run before our pagehide
        // listener. Handled a task later, a rejection counts only if the page is still alive;
        // else each fast navigation would queue, and re-send, events that did arrive.
        () => setTimeout(done, 0, e),
      );
    } catch (x) {
      done(e, nav.sendBeacon(endpoint, body));
    }
  };
  var flush = safe(() => c && (load().q || []).forEach(post));
  var send = (e) => (c ? post(e) : pend && pend.push(e) > 20 && pend.shift());

  // ---- the API: roktEdge(method, ...)
  // which fields a method's two arguments fill
  var F = {
    page: 'name properties',
    track: 'event properties',
    identify: 'userId traits',
    group: 'groupId traits',
    alias: 'userId previousId',
  };
  var api = safe((m, a, b) => {
    var k = F[m] && F[m].split(' ');
    var prev = uid || aid;
    if (m == 'consent') {
      said = a && a.ads ? 1 : 0;
      (c = said && !gpc) ? grant() : forget();
      a = pend || [];
      pend = 0;
      a.forEach(send); // sent when granted, dropped when denied
    } else if (k) {
      // page(props), identify(traits)
      if (a && typeof a == 'object') {
        b = a;
        a = void 0;
      }
      if (k[0] == 'userId') {
        if (a != null) {
          uid = '' + a;
          c && grant();
        }
        a = uid;
        if (m == 'alias') b = prev;
      }
      var e = {
        type: m,
        userId: uid,
        anonymousId: aid,
        messageId: uuid(),
        timestamp: new Date().toJSON(),
        context: {
          page: {
            url: loc.href,
            path: loc.pathname,
            search: loc.search,
            referrer: d.referrer,
            title: d.title,
          },
        },
        integrations: rtid ? { [R]: { rtid } } : void 0,
      };
      e[k[0]] = a;
      e[k[1]] = b;
      send(e);
    }
  });

  // ---- beside Segment: a source middleware that adds the click id to analytics.js events.
  // Segment's install snippet queues addSourceMiddleware calls until analytics.js has loaded; a
  // page without that stub gets a second try from analytics.ready(), once analytics.js is there.
  var segment = safe((late) => {
    var a = w.analytics;
    a &&
      (a.addSourceMiddleware
        ? a.addSourceMiddleware((m) => {
            safe(() => {
              var i = m.payload.obj.integrations || (m.payload.obj.integrations = {});
              c && rtid && i[R] !== false && (i[R] = Object.assign({}, i[R], { rtid }));
            })();
            m.next(m.payload);
          })
        : late || (a.ready && a.ready(() => segment(1))));
  });

  // ---- start: consent state, click id, retry queue, the stub's calls, page event, listeners
  safe(() => {
    var s = load();
    said = s.consent;
    var required = ds.consent == 'required';
    var sp = new URLSearchParams(loc.search);
    gpc = nav.globalPrivacyControl === true;
    c = !gpc && (said == null ? !required : said);
    pend = !gpc && said == null && required && [];
    rtid = fresh = sp.get('rtid') || sp.get('rclid');
    if (c) {
      aid = s.aid;
      uid = s.uid;
    }
    aid = aid || uuid();
    c ? grant() : pend || forget();
    flush();
    var calls = w.roktEdge && w.roktEdge.q;
    w.roktEdge = api;
    (calls || []).forEach((args) => api(...args));
    ds.autoPage != 'false' && api('page');
    addEventListener('pagehide', flush);
    segment();
  })();
})(window, document, navigator, location);
