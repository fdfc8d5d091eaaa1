import { useEffect, useState } from 'react';
import { Link } from 'react-router-dom';
import type { EventInput, Resource } from '../types';
import {
  modelTypeLabel,
  toEventInput,
  validateEvent,
  type EventField,
  type EventFormValues,
} from '../validation';
import { browserTimeZone, formatInZone, isValidTimeZone, offsetLabel, timeZones, zonedToInstant } from '../time';
import { CheckboxField, SelectField, TextField } from './fields';
import { useValidatedForm } from './useValidatedForm';
import { ActiveBadge, AuthBadge, ErrorBanner } from './ui';

const FIELD_ORDER: readonly EventField[] = [
  'name',
  'time_zone',
  'starts_at',
  'ends_at',
  'max_token_cap',
  'daily_request_cap',
  'daily_token_cap',
  'token_budget',
  'organizer_name',
  'organizer_email',
  'resource_ids',
  'active',
];

/** "now" that moves on every 30 s, for the time-zone picker's clock. */
function useNow(): Date {
  const [now, setNow] = useState(() => new Date());
  useEffect(() => {
    const t = window.setInterval(() => setNow(new Date()), 30_000);
    return () => window.clearInterval(t);
  }, []);
  return now;
}

/** What a wall-clock time in the event's zone is in the admin's own zone. */
function windowHint(local: string, zone: string, defaultHint: string): string {
  const instant = isValidTimeZone(zone) ? zonedToInstant(local, zone) : null;
  if (!instant) return defaultHint;
  const mine = browserTimeZone();
  const there = `${formatInZone(instant, zone)} ${offsetLabel(zone, instant)} (${zone})`;
  if (mine === zone) return there;
  return `${there} = ${formatInZone(instant, mine)} ${offsetLabel(mine, instant)} in your time zone (${mine}).`;
}

interface Props {
  initial: EventFormValues;
  resources: Resource[];
  submitLabel?: string;
  onSubmit: (input: EventInput) => Promise<void>;
  onCancel: () => void;
}

export function EventForm({ initial, resources, submitLabel = 'Save', onSubmit, onCancel }: Props) {
  const { values, errors, general, submitting, form, update, submit } = useValidatedForm({
    initial,
    fieldOrder: FIELD_ORDER,
    validate: validateEvent,
    toInput: toEventInput,
    onSubmit,
  });
  const now = useNow();

  function toggleResource(id: string, on: boolean) {
    const ids = values.resource_ids.filter((r) => r !== id);
    update({ resource_ids: on ? [...ids, id] : ids });
  }

  const zones = timeZones();
  const zoneValid = isValidTimeZone(values.time_zone);
  const zoneOptions = zones.includes(values.time_zone) || !values.time_zone ? zones : [values.time_zone, ...zones];
  const errorCount = Object.keys(errors).length;
  const known = new Set(resources.map((r) => r.id));
  const missing = values.resource_ids.filter((id) => !known.has(id));

  return (
    <form ref={form} className="card form" onSubmit={submit} noValidate>
      {errorCount > 0 ? (
        <p className="banner banner-error" role="alert">
          {errorCount === 1 ? 'One field needs attention.' : `${errorCount} fields need attention.`}
        </p>
      ) : null}
      <ErrorBanner>{general}</ErrorBanner>
      <TextField
        id="name"
        label="Name"
        required
        value={values.name}
        onValue={(v) => update({ name: v })}
        error={errors.name}
        hint="Attendees see it in error messages, e.g. “The event 'Spring hackathon' is not active.”"
        autoComplete="off"
      />
      <fieldset className="fieldset">
        <legend>Window</legend>
        <SelectField
          id="time_zone"
          label="Time zone"
          required
          value={values.time_zone}
          onValue={(v) => update({ time_zone: v })}
          error={errors.time_zone}
          hint={
            zoneValid
              ? `Local time there now: ${formatInZone(now, values.time_zone)} (${offsetLabel(values.time_zone, now)}). Start and end are read in this zone, daylight saving included.`
              : 'Start and end are read in this zone.'
          }
        >
          {zoneOptions.map((z) => (
            <option key={z} value={z}>
              {z.replace(/_/g, ' ')}
            </option>
          ))}
        </SelectField>
        <div className="grid-2">
          <TextField
            id="starts_at"
            label="Starts"
            type="datetime-local"
            required
            value={values.starts_at}
            onValue={(v) => update({ starts_at: v })}
            error={errors.starts_at}
            hint={windowHint(values.starts_at, values.time_zone, 'When attendee keys start working.')}
          />
          <TextField
            id="ends_at"
            label="Ends"
            type="datetime-local"
            required
            value={values.ends_at}
            onValue={(v) => update({ ends_at: v })}
            error={errors.ends_at}
            hint={windowHint(values.ends_at, values.time_zone, 'When attendee keys stop working.')}
          />
        </div>
      </fieldset>
      <fieldset className="fieldset">
        <legend>Caps</legend>
        <p className="hint">
          Enforced by every edge. A call over a cap gets 429 with a message naming it. 0 or blank: no cap.
        </p>
        <div className="grid-2">
          <TextField
            id="max_token_cap"
            label="Max tokens per request"
            inputMode="numeric"
            value={values.max_token_cap}
            onValue={(v) => update({ max_token_cap: v })}
            error={errors.max_token_cap}
            hint="Requests asking for more (max_tokens, max_completion_tokens or max_output_tokens) are refused."
          />
          <TextField
            id="daily_request_cap"
            label="Daily requests per attendee"
            inputMode="numeric"
            value={values.daily_request_cap}
            onValue={(v) => update({ daily_request_cap: v })}
            error={errors.daily_request_cap}
            hint="Model calls per attendee per UTC day."
          />
          <TextField
            id="daily_token_cap"
            label="Daily tokens per attendee"
            inputMode="numeric"
            value={values.daily_token_cap}
            onValue={(v) => update({ daily_token_cap: v })}
            error={errors.daily_token_cap}
            hint="Total tokens (prompt + completion) per attendee per UTC day; resets at 00:00 UTC."
          />
          <TextField
            id="token_budget"
            label="Token budget for the event"
            inputMode="numeric"
            value={values.token_budget}
            onValue={(v) => update({ token_budget: v })}
            error={errors.token_budget}
            hint="Total tokens for the whole event, all attendees and days together."
          />
        </div>
      </fieldset>
      <div className="grid-2">
        <TextField
          id="organizer_name"
          label="Organizer"
          value={values.organizer_name}
          onValue={(v) => update({ organizer_name: v })}
          error={errors.organizer_name}
          autoComplete="off"
        />
        <TextField
          id="organizer_email"
          label="Organizer email"
          type="email"
          value={values.organizer_email}
          onValue={(v) => update({ organizer_email: v })}
          error={errors.organizer_email}
          autoComplete="off"
        />
      </div>
      <fieldset
        className={`fieldset${errors.resource_ids ? ' has-error' : ''}`}
        data-field="resource_ids"
        tabIndex={-1}
        aria-describedby={errors.resource_ids ? 'resource_ids-error' : 'resource_ids-hint'}
      >
        <legend>Resources to expose</legend>
        <p className="hint" id="resource_ids-hint">
          Attendees can call these deployments, by deployment name, during the window.
        </p>
        {resources.length === 0 ? (
          <p>
            No resources yet: <Link to="/resources/new">create one</Link> first.
          </p>
        ) : (
          <ul className="checklist">
            {resources.map((r) => (
              <li key={r.id}>
                <input
                  type="checkbox"
                  id={`resource-${r.id}`}
                  checked={values.resource_ids.includes(r.id)}
                  onChange={(e) => toggleResource(r.id, e.target.checked)}
                />
                <label htmlFor={`resource-${r.id}`}>
                  <span className="cell-title">{r.friendly_name}</span>{' '}
                  <span className="muted small">
                    <code>{r.deployment_name}</code> · {modelTypeLabel(r.model_type)}
                    {r.region ? ` · ${r.region}` : ''}
                  </span>{' '}
                  <AuthBadge resource={r} /> {r.active ? null : <ActiveBadge active={false} />}
                </label>
              </li>
            ))}
          </ul>
        )}
        {missing.length ? <p className="hint">Also exposes {missing.length} resource(s) that no longer exist.</p> : null}
        {errors.resource_ids ? (
          <p className="field-error" id="resource_ids-error">
            {errors.resource_ids}
          </p>
        ) : null}
      </fieldset>
      <CheckboxField
        id="active"
        label="Active"
        checked={values.active}
        onChecked={(c) => update({ active: c })}
        error={errors.active}
        hint="An inactive event refuses every attendee key, whatever the window."
      />
      <div className="form-actions">
        <button type="submit" className="button button-primary" disabled={submitting}>
          {submitting ? 'Saving…' : submitLabel}
        </button>
        <button type="button" className="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
