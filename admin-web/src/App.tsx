import { Navigate, Route, Routes } from 'react-router-dom';
import { Layout } from './components/Layout';
import { useSession } from './session';
import { SignInPage } from './pages/SignInPage';
import { ResourcesPage } from './pages/ResourcesPage';
import { ResourceFormPage } from './pages/ResourceFormPage';
import { EventsPage } from './pages/EventsPage';
import { EventFormPage } from './pages/EventFormPage';
import { EventDetailPage } from './pages/EventDetailPage';
import { NotFoundPage } from './pages/NotFoundPage';
import { ReportsPage } from './pages/ReportsPage';
import { ReportsIndexPage } from './pages/ReportsIndexPage';

export function App() {
  const { signedIn } = useSession();
  // Signed out, every address shows the sign-in form; the address is kept, so the admin lands
  // where they were going once signed in.
  if (!signedIn) return <SignInPage />;
  return (
    <Routes>
      <Route element={<Layout />}>
        <Route index element={<Navigate to="/resources" replace />} />
        <Route path="resources" element={<ResourcesPage />} />
        <Route path="resources/new" element={<ResourceFormPage />} />
        <Route path="resources/:id/edit" element={<ResourceFormPage />} />
        <Route path="events" element={<EventsPage />} />
        <Route path="events/new" element={<EventFormPage />} />
        <Route path="events/:id" element={<EventDetailPage />} />
        <Route path="events/:id/edit" element={<EventFormPage />} />
        <Route path="events/:id/reports" element={<ReportsPage />} />
        <Route path="reports" element={<ReportsIndexPage />} />
        <Route path="*" element={<NotFoundPage />} />
      </Route>
    </Routes>
  );
}
