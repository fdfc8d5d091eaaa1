// Time-zone helpers for event windows. The API reads local date-times (`2026-03-28T09:00`) in the
// event's IANA zone and answers RFC 3339 with that zone's offset; these helpers only display and
// compare, the control plane stays the authority (daylight-saving gaps included).

const LOCAL_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/;

/**
 * Browsers list some zones under their old ICU names; the picker shows the current IANA names
 * (which browsers and the control plane both accept).
 */
const CURRENT_NAMES: Record<string, string> = {
  'Asia/Calcutta': 'Asia/Kolkata',
  'Asia/Saigon': 'Asia/Ho_Chi_Minh',
  'Asia/Katmandu': 'Asia/Kathmandu',
  'Asia/Rangoon': 'Asia/Yangon',
  'Europe/Kiev': 'Europe/Kyiv',
  'America/Godthab': 'America/Nuuk',
  'Atlantic/Faeroe': 'Atlantic/Faroe',
  'Africa/Asmera': 'Africa/Asmara',
  'Pacific/Truk': 'Pacific/Chuuk',
  'Pacific/Ponape': 'Pacific/Pohnpei',
  'Pacific/Enderbury': 'Pacific/Kanton',
  'America/Buenos_Aires': 'America/Argentina/Buenos_Aires',
  'America/Catamarca': 'America/Argentina/Catamarca',
  'America/Cordoba': 'America/Argentina/Cordoba',
  'America/Jujuy': 'America/Argentina/Jujuy',
  'America/Mendoza': 'America/Argentina/Mendoza',
  'America/Indianapolis': 'America/Indiana/Indianapolis',
  'America/Louisville': 'America/Kentucky/Louisville',
};

export function currentZoneName(zone: string): string {
  return CURRENT_NAMES[zone] ?? zone;
}

export function browserTimeZone(): string {
  try {
    return currentZoneName(Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC');
  } catch {
    return 'UTC';
  }
}

let zoneCache: string[] | null = null;

/** Every IANA zone the browser knows, UTC first. */
export function timeZones(): string[] {
  if (zoneCache) return zoneCache;
  let zones: string[] = [];
  const intl = Intl as typeof Intl & { supportedValuesOf?: (key: string) => string[] };
  try {
    zones = intl.supportedValuesOf ? intl.supportedValuesOf('timeZone') : [];
  } catch {
    zones = [];
  }
  const set = new Set(zones.map(currentZoneName).filter(isValidTimeZone));
  set.delete('UTC');
  const local = browserTimeZone();
  if (local !== 'UTC') set.add(local);
  zoneCache = ['UTC', ...[...set].sort()];
  return zoneCache;
}

export function isValidTimeZone(zone: string): boolean {
  if (!zone) return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** "Sat 28 Mar 2026, 09:00" in `zone`. */
export function formatInZone(when: Date | string, zone: string): string {
  const date = typeof when === 'string' ? new Date(when) : when;
  if (Number.isNaN(date.getTime())) return String(when);
  try {
    return new Intl.DateTimeFormat('en-GB', {
      timeZone: zone,
      weekday: 'short',
      day: 'numeric',
      month: 'short',
      year: 'numeric',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
    }).format(date);
  } catch {
    return date.toISOString();
  }
}

/** "GMT+1", "GMT-4", "GMT" for `zone` at `when`. */
export function offsetLabel(zone: string, when: Date = new Date()): string {
  try {
    const part = new Intl.DateTimeFormat('en-US', { timeZone: zone, timeZoneName: 'shortOffset' })
      .formatToParts(when)
      .find((p) => p.type === 'timeZoneName');
    return part?.value ?? '';
  } catch {
    return '';
  }
}

/** The wall-clock fields of `ms` in `zone`, read back as if they were UTC. */
function wallClockAsUtc(ms: number, zone: string): number {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: zone,
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  }).formatToParts(new Date(ms));
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  return Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'));
}

/**
 * The instant a local date-time (`2026-03-28T09:00`) names in `zone`, or null when it is not a
 * date-time or the clocks skip it (a daylight-saving gap). An hour repeated when clocks go back
 * gives its first occurrence, as the control plane does.
 */
export function zonedToInstant(local: string, zone: string): Date | null {
  const m = LOCAL_RE.exec(local);
  if (!m || !isValidTimeZone(zone)) return null;
  const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], m[6] ? +m[6] : 0);
  const candidates = [wall - 14 * 3600_000, wall, wall + 14 * 3600_000]
    .map((probe) => wall - (wallClockAsUtc(probe, zone) - Math.floor(probe / 1000) * 1000))
    .filter((ms) => wallClockAsUtc(ms, zone) === wall)
    .sort((a, b) => a - b);
  return candidates.length ? new Date(candidates[0]) : null;
}

/** A `datetime-local` value (`2026-03-28T09:00`) for `when` in `zone`. */
export function toLocalInput(when: Date, zone: string): string {
  return new Date(wallClockAsUtc(when.getTime(), zone)).toISOString().slice(0, 16);
}

/**
 * The API answers `2026-03-28T09:00:00+01:00` (the event zone's offset): its first 16 characters
 * are the wall-clock time in that zone, which is what the form edits.
 */
export function localInputFromApi(rfc3339: string): string {
  return LOCAL_RE.test(rfc3339.slice(0, 16)) ? rfc3339.slice(0, 16) : rfc3339;
}

export type EventPhase = 'inactive' | 'upcoming' | 'live' | 'ended';

export function eventPhase(
  event: { active: boolean; starts_at: string; ends_at: string },
  now: Date = new Date(),
): EventPhase {
  if (!event.active) return 'inactive';
  const t = now.getTime();
  if (t < Date.parse(event.starts_at)) return 'upcoming';
  if (t >= Date.parse(event.ends_at)) return 'ended';
  return 'live';
}
