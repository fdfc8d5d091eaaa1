import { useEffect, useRef } from 'react';
import { Link, NavLink, Outlet, useLocation } from 'react-router-dom';
import { useSession } from '../session';

export function Layout() {
  const { signOut } = useSession();
  const { pathname } = useLocation();
  const main = useRef<HTMLElement>(null);
  const first = useRef(true);
  // An event's report (/events/:id/reports) belongs to Reports, not to Events.
  const inReports = pathname === '/reports' || /^\/events\/[^/]+\/reports\/?$/.test(pathname);

  // After a client-side navigation, keyboard and screen-reader users start at the new content,
  // as they would after a page load.
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    main.current?.focus({ preventScroll: false });
  }, [pathname]);

  return (
    <>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <div className="topbar-inner">
          <span className="brand">
            <img src="/favicon.svg" alt="" width="24" height="24" />
            AI Proxy <span className="brand-sub">admin</span>
          </span>
          <nav aria-label="Main">
            <NavLink to="/resources">Resources</NavLink>
            <NavLink
              to="/events"
              className={({ isActive }) => (isActive && !inReports ? 'active' : undefined)}
              aria-current={inReports ? 'false' : 'page'}
            >
              Events
            </NavLink>
            <Link to="/reports" className={inReports ? 'active' : undefined} aria-current={inReports ? 'page' : undefined}>
              Reports
            </Link>
          </nav>
          <button type="button" className="button button-quiet" onClick={signOut}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" ref={main} tabIndex={-1}>
        <Outlet />
      </main>
    </>
  );
}
