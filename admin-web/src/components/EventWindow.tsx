import type { AiEvent } from '../types';
import { browserTimeZone, eventPhase, formatInZone, offsetLabel } from '../time';

const PHASES = {
  live: { label: 'Live', className: 'badge-ok' },
  upcoming: { label: 'Upcoming', className: 'badge-info' },
  ended: { label: 'Ended', className: 'badge-muted' },
  inactive: { label: 'Inactive', className: 'badge-muted' },
} as const;

export function PhaseBadge({ event }: { event: AiEvent }) {
  const phase = PHASES[eventPhase(event)];
  return <span className={`badge ${phase.className}`}>{phase.label}</span>;
}

/** The window in the event's zone, and in the admin's own zone when it differs. */
export function EventWindow({ event, compact = false }: { event: AiEvent; compact?: boolean }) {
  const zone = event.time_zone;
  const mine = browserTimeZone();
  const start = new Date(event.starts_at);
  const end = new Date(event.ends_at);
  return (
    <span className="window">
      <span>
        {formatInZone(start, zone)} → {formatInZone(end, zone)}
      </span>{' '}
      <span className="muted small">
        {zone} ({offsetLabel(zone, start)})
      </span>
      {!compact && mine !== zone ? (
        <span className="muted small window-local">
          Your time ({mine}): {formatInZone(start, mine)} → {formatInZone(end, mine)}
        </span>
      ) : null}
    </span>
  );
}
