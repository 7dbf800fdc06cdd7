/**
 * What a dashboard panel is: a section of HTML, a link in the page's navigation, and a script
 * that registers itself with the page (`PANELS.push({ start(me), stop() })`). The page calls
 * `start` after a login (with `/dashboard/api/me`'s answer) and `stop` at a logout. A panel's
 * script runs in the page's script, so it may use the page's helpers: `$(id)`, `api(path, init)`
 * (fetch with the JSON content type; a 401 goes back to the login), `esc(text)` (HTML-escaped) and
 * `show(element, on)`.
 *
 * @module
 */

/** One panel of the dashboard page. */
export interface Panel {
  /** The section's element id and the link's text. */
  nav: [id: string, label: string];
  /** The section. */
  html: string;
  /** Script text run in the page's script (no `</script>` in it). */
  script: string;
}
