import { Link } from 'react-router-dom';
import { useDocumentTitle } from '../hooks';

export function NotFoundPage() {
  useDocumentTitle('Not found');
  return (
    <section className="page">
      <h1>Page not found</h1>
      <p>
        Nothing lives at this address. Go to <Link to="/resources">Resources</Link> or <Link to="/events">Events</Link>.
      </p>
    </section>
  );
}
