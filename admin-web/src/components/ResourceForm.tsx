import type { ModelType, ResourceInput } from '../types';
import {
  KEY_NOT_USED,
  STORED_KEY_DROPPED,
  MI_NOT_AVAILABLE,
  MODEL_TYPES,
  FOUNDRY_AGENT_ENDPOINT_FORM,
  managedIdentityAvailable,
  toResourceInput,
  validateResource,
  type ResourceField,
  type ResourceFormContext,
  type ResourceFormValues,
} from '../validation';
import { CheckboxField, SelectField, TextField } from './fields';
import { useValidatedForm } from './useValidatedForm';
import { ErrorBanner } from './ui';

const FIELD_ORDER: readonly ResourceField[] = [
  'friendly_name',
  'deployment_name',
  'model_type',
  'endpoint_url',
  'key',
  'region',
  'use_managed_identity',
  'identity_client_id',
  'use_max_completion_tokens',
  'active',
];

const ENDPOINT_HINTS: Record<ModelType, string> = {
  'foundry-model': 'The Azure OpenAI or AI Services account, e.g. https://<name>.openai.azure.com.',
  'foundry-agent': `The Foundry project endpoint: ${FOUNDRY_AGENT_ENDPOINT_FORM}.`,
  'azure-ai-search': 'The search service, e.g. https://<service>.search.windows.net.',
  'ai-inference': 'The model inference endpoint, with /models: https://<name>.services.ai.azure.com/models.',
  'mcp-server': 'The MCP server’s https:// address.',
};

const SCOPES: Record<ModelType, string | null> = {
  'foundry-model': 'https://cognitiveservices.azure.com/.default',
  'foundry-agent': 'https://ai.azure.com/.default',
  'azure-ai-search': 'https://search.azure.com/.default',
  'ai-inference': 'https://cognitiveservices.azure.com/.default',
  'mcp-server': null,
};

interface Props {
  initial: ResourceFormValues;
  context: ResourceFormContext;
  submitLabel?: string;
  onSubmit: (input: ResourceInput) => Promise<void>;
  onCancel: () => void;
}

export function ResourceForm({ initial, context, submitLabel = 'Save', onSubmit, onCancel }: Props) {
  const { values, errors, general, submitting, form, update, submit } = useValidatedForm({
    initial,
    fieldOrder: FIELD_ORDER,
    validate: (v: ResourceFormValues) => validateResource(v, context),
    toInput: (v: ResourceFormValues) => toResourceInput(v),
    onSubmit,
    normalize: (next: ResourceFormValues, patch: Partial<ResourceFormValues>) =>
      patch.model_type && !managedIdentityAvailable(patch.model_type) ? { ...next, use_managed_identity: false } : next,
  });

  const mi = values.use_managed_identity;
  const miAvailable = managedIdentityAvailable(values.model_type);
  const scope = SCOPES[values.model_type];
  const errorCount = Object.keys(errors).length;

  let keyHint: string;
  if (mi) keyHint = context.editing && context.hasStoredKey ? STORED_KEY_DROPPED : KEY_NOT_USED;
  else if (context.editing && context.hasStoredKey) keyHint = 'A key is stored. Leave blank to keep it, or type a new one to replace it.';
  else keyHint = 'The upstream’s API key; stored encrypted and never shown again. Required unless “Use Managed Identity” is checked.';

  return (
    <form ref={form} className="card form" onSubmit={submit} noValidate aria-describedby={general ? 'form-error' : undefined}>
      {errorCount > 0 ? (
        <p className="banner banner-error" role="alert">
          {errorCount === 1 ? 'One field needs attention.' : `${errorCount} fields need attention.`}
        </p>
      ) : null}
      {general ? (
        <div id="form-error">
          <ErrorBanner>{general}</ErrorBanner>
        </div>
      ) : null}
      <div className="grid-2">
        <TextField
          id="friendly_name"
          label="Friendly Name"
          required
          value={values.friendly_name}
          onValue={(v) => update({ friendly_name: v })}
          error={errors.friendly_name}
          hint="Shown to admins and in error messages, e.g. “GPT-4o Sweden”."
          autoComplete="off"
        />
        <TextField
          id="deployment_name"
          label="Deployment Name"
          required
          value={values.deployment_name}
          onValue={(v) => update({ deployment_name: v })}
          error={errors.deployment_name}
          hint="As Azure shows it; attendees call it by this name."
          autoComplete="off"
          spellCheck={false}
        />
        <SelectField
          id="model_type"
          label="Type"
          required
          value={values.model_type}
          onValue={(v) => update({ model_type: v as ModelType })}
          error={errors.model_type}
        >
          {MODEL_TYPES.map((t) => (
            <option key={t.value} value={t.value}>
              {t.label}
            </option>
          ))}
        </SelectField>
        <TextField
          id="region"
          label="Region"
          value={values.region}
          onValue={(v) => update({ region: v })}
          error={errors.region}
          hint="Azure region, e.g. swedencentral; edges prefer resources in their own region."
          autoComplete="off"
          spellCheck={false}
        />
      </div>
      <TextField
        id="endpoint_url"
        label="Endpoint"
        required
        type="url"
        inputMode="url"
        value={values.endpoint_url}
        onValue={(v) => update({ endpoint_url: v })}
        error={errors.endpoint_url}
        hint={ENDPOINT_HINTS[values.model_type]}
        autoComplete="off"
        spellCheck={false}
        placeholder={values.model_type === 'foundry-agent' ? FOUNDRY_AGENT_ENDPOINT_FORM : 'https://'}
      />
      <TextField
        id="key"
        label="Key"
        type="password"
        required={!mi && !(context.editing && context.hasStoredKey)}
        value={mi ? '' : values.key}
        onValue={(v) => update({ key: v })}
        error={errors.key}
        hint={keyHint}
        disabled={mi}
        autoComplete="new-password"
        spellCheck={false}
        placeholder={mi ? 'Not used with managed identity' : context.editing && context.hasStoredKey ? '•••••••• (stored)' : ''}
      />
      <CheckboxField
        id="use_max_completion_tokens"
        label="Use max_completion_tokens (reasoning models)"
        checked={values.use_max_completion_tokens}
        onChecked={(c) => update({ use_max_completion_tokens: c })}
        error={errors.use_max_completion_tokens}
        hint="For GPT-5 and o-series deployments, which refuse max_tokens: chat calls through this resource have max_tokens renamed max_completion_tokens."
      />
      <fieldset className="fieldset">
        <legend>Authentication and status</legend>
        <CheckboxField
          id="use_managed_identity"
          label="Use Managed Identity"
          checked={mi}
          disabled={!miAvailable}
          onChecked={(c) => update({ use_managed_identity: c })}
          error={errors.use_managed_identity}
          hint={
            !miAvailable
              ? MI_NOT_AVAILABLE
              : `The proxy sends an Entra ID token for ${scope} instead of a key; grant its identity the role for this resource (see docs/managed-identity.md).`
          }
        />
        {mi ? (
          <TextField
            id="identity_client_id"
            label="User-assigned identity client ID (optional)"
            value={values.identity_client_id}
            onValue={(v) => update({ identity_client_id: v })}
            error={errors.identity_client_id}
            hint="Blank: the proxy’s own identity. A GUID: a user-assigned identity used for this resource only."
            autoComplete="off"
            spellCheck={false}
          />
        ) : null}
        <CheckboxField
          id="active"
          label="Active"
          checked={values.active}
          onChecked={(c) => update({ active: c })}
          error={errors.active}
          hint="Inactive resources are not offered to attendees."
        />
      </fieldset>
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
